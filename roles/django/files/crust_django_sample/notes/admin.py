from django.contrib import admin

from crust_django_sample.notes.models import Note

admin.site.register(Note)
