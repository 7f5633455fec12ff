"""The TurboGears2 application (minimal mode): controllers and configuration."""

import os

from sqlalchemy import text
from tg import MinimalApplicationConfigurator, TGController, abort, expose, request, response

from crust_tg2_sample import model

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


def read_release(path="/etc/crust-release"):
    info = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    info[key] = value
    except OSError:
        pass
    return info


class NotesController(TGController):
    @expose("json")
    def index(self, **kw):
        if request.method == "POST":
            body = request.json_body if request.body else {}
            note_text = str(body.get("text", "")).strip()
            if not note_text or len(note_text) > 500:
                abort(400, "text: 1 to 500 characters")
            with model.sessions()() as session:
                note = model.Note(text=note_text)
                session.add(note)
                session.commit()
                response.status = 201
                return note.as_dict()
        with model.sessions()() as session:
            return {"notes": [n.as_dict() for n in model.list_notes(session)]}


class RootController(TGController):
    api = TGController()
    api.notes = NotesController()

    @expose("index.jinja")
    def index(self):
        with model.sessions()() as session:
            notes = model.list_notes(session)
        return {"release": read_release(), "title": os.environ.get("CRUST_APP_TITLE", "Crust TurboGears2 appliance"), "notes": notes}

    @expose("text/plain")
    def healthz(self):
        with model.sessions()() as session:
            session.execute(text("SELECT 1"))
        return "ok\n"


def make_app():
    config = MinimalApplicationConfigurator()
    config.update_blueprint(
        {
            "root_controller": RootController(),
            "renderers": ["jinja", "json"],
            "default_renderer": "jinja",
            "paths": {"templates": [TEMPLATES]},
        }
    )
    return config.make_wsgi_app()
