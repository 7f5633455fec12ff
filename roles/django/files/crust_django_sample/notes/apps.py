from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "crust_django_sample.notes"
    label = "notes"
