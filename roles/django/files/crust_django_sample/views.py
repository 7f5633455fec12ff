import json

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from crust_django_sample.notes.models import Note


def index(request):
    return render(request, "index.html", {"title": settings.CONFIG["title"], "count": Note.objects.count()})


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


# A JSON API for scripts (the smoke test among them): no session, hence no CSRF token.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def notes(request):
    if request.method == "POST":
        try:
            text = json.loads(request.body)["text"]
        except (ValueError, KeyError, TypeError):
            return JsonResponse({"error": 'send {"text": "..."}'}, status=400)
        if not isinstance(text, str) or not 0 < len(text) <= 500:
            return JsonResponse({"error": "text: 1-500 characters"}, status=400)
        note = Note.objects.create(text=text)
        return JsonResponse({"id": note.id, "text": note.text}, status=201)
    return JsonResponse({"notes": [{"id": n.id, "text": n.text} for n in Note.objects.order_by("-id")[:100]]})
