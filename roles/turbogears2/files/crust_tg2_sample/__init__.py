"""Crust's sample TurboGears2 application: a page from a template, a JSON API, a small model.

    GET  /              HTML page (Jinja template) naming the appliance, its build and the notes
    GET  /api/notes     the notes, as JSON
    POST /api/notes     create a note from {"text": "..."}; returns it, as JSON
    GET  /healthz       200 "ok" when the database answers

Served by gunicorn as crust_tg2_sample:application. The database URL comes from the
environment (CRUST_TG2_DATABASE_URL), written at first boot with generated credentials.
"""

from crust_tg2_sample.app import make_app

application = make_app()
