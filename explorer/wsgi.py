import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "explorer.settings")
application = get_wsgi_application()

# gunicorn, docker and any other WSGI server: login required, so no development key.
from explorer.access import refuse_unsafe_start  # noqa: E402  (needs the settings loaded above)

refuse_unsafe_start()
