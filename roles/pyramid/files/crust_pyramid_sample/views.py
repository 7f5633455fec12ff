import json
import os

from pyramid.view import view_config

from crust_pyramid_sample.models import Note


@view_config(route_name="index", renderer="index.jinja2")
def index(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return {
        "title": os.environ.get("CRUST_APP_TITLE", "Crust Pyramid appliance"),
        "count": request.db.query(Note).count(),
        "visits": request.session["visits"],
    }


@view_config(route_name="healthz", renderer="string")
def healthz(request):
    return "ok"


@view_config(route_name="notes", request_method="GET", renderer="json")
def list_notes(request):
    notes = request.db.query(Note).order_by(Note.id.desc()).limit(100)
    return {"notes": [{"id": n.id, "text": n.text} for n in notes]}


@view_config(route_name="notes", request_method="POST", renderer="json")
def create_note(request):
    try:
        text = json.loads(request.body)["text"]
    except (ValueError, KeyError, TypeError):
        request.response.status = 400
        return {"error": 'send {"text": "..."}'}
    if not isinstance(text, str) or not 0 < len(text) <= 500:
        request.response.status = 400
        return {"error": "text: 1-500 characters"}
    note = Note(text=text)
    request.db.add(note)
    request.db.commit()
    request.response.status = 201
    return {"id": note.id, "text": note.text}
