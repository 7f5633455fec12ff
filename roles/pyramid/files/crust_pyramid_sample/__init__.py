"""Crust's sample Pyramid application: a Jinja2 page, a JSON API and notes in PostgreSQL
(SQLAlchemy), a signed session cookie. Its secrets come from the environment, made on the
machine at first boot: DATABASE_URL (the postgresql role) and CRUST_PYRAMID_SECRET (the pyramid
role's setup)."""

import os

from pyramid.config import Configurator
from pyramid.session import SignedCookieSessionFactory

from crust_pyramid_sample.models import make_session_factory


def main(global_config=None, **settings):
    with Configurator(settings=settings) as config:
        config.set_session_factory(SignedCookieSessionFactory(os.environ["CRUST_PYRAMID_SECRET"], httponly=True, samesite="Lax"))
        config.include("pyramid_jinja2")
        config.add_jinja2_search_path("crust_pyramid_sample:templates")
        db = make_session_factory(os.environ["DATABASE_URL"])
        config.add_request_method(lambda request: _db(request, db), "db", reify=True)
        config.add_route("index", "/")
        config.add_route("healthz", "/healthz")
        config.add_route("notes", "/api/notes")
        config.scan("crust_pyramid_sample.views")
        return config.make_wsgi_app()


def _db(request, factory):
    """A database session per request, closed when the request ends."""
    session = factory()
    request.add_finished_callback(lambda _request: session.close())
    return session


application = main()
