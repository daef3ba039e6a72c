"""ASGI entry point of the control plane (the inference service has its own, in serving/)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyforge.settings")
application = get_asgi_application()
