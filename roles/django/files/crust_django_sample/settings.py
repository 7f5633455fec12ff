"""Settings of the sample project, for an appliance: nothing machine-specific is in the image.

Made on the machine at first boot (the django role's crust-django-setup): DJANGO_SECRET_KEY
(/etc/crust-django/secret.env) and DATABASE_URL (/etc/crust-django/database.env, the postgresql
role). Chosen at build time, as role variables: what /etc/crust-django/settings.json holds
(allowed hosts, trusted origins, time zone, language, HTTPS). A project of your own reads the
same three (see the README's Django section).
"""

import json
import os
import secrets
import urllib.parse
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
CONFIG = json.loads(Path(os.environ.get("CRUST_DJANGO_SETTINGS", "/etc/crust-django/settings.json")).read_text(encoding="utf-8"))

# At build time (collectstatic) there is no key and no database, by design: a throw-away key
# that is never written anywhere.
BUILDING = os.environ.get("CRUST_DJANGO_BUILD") == "1"
SECRET_KEY = secrets.token_urlsafe(50) if BUILDING else os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = CONFIG["allowed_hosts"]
CSRF_TRUSTED_ORIGINS = CONFIG["csrf_trusted_origins"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crust_django_sample.notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "crust_django_sample.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "crust_django_sample.wsgi.application"


def database(url):
    """DATABASE_URL (postgresql://user:password@host:port/name) as Django's DATABASES entry."""
    parts = urllib.parse.urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": urllib.parse.unquote(parts.path.lstrip("/")),
        "USER": urllib.parse.unquote(parts.username or ""),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
    }


DATABASES = {"default": database(os.environ.get("DATABASE_URL", "postgresql://build@127.0.0.1/build"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = CONFIG["language_code"]
TIME_ZONE = CONFIG["time_zone"]
USE_I18N = True
USE_TZ = True

STATIC_URL = CONFIG["static_url"]
STATIC_ROOT = CONFIG["static_root"]
STATICFILES_DIRS = [BASE_DIR / "static"]

# Behind nginx on the appliance: TLS, when there is any, ends in front of it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if CONFIG["https"]:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
