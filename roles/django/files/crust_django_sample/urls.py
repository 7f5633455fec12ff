from django.contrib import admin
from django.urls import path

from crust_django_sample import views

urlpatterns = [
    path("", views.index),
    path("healthz", views.healthz),
    path("api/notes", views.notes),
    path("admin/", admin.site.urls),
]
