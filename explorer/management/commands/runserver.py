"""Django's development server (static files included), with the product's access rule:
bound to a loopback address it is login-free for its one local user and says so; bound to
anything else it requires login and a real DJANGO_SECRET_KEY (explorer/access.py)."""
import os

from django.contrib.staticfiles.management.commands.runserver import Command as StaticFilesRunserver
from django.core.exceptions import ImproperlyConfigured

from explorer import access


class Command(StaticFilesRunserver):
    def inner_run(self, *args, **options):
        access.serve_login_free(self.addr)
        try:
            access.refuse_unsafe_start()
        except ImproperlyConfigured as exc:
            self.stderr.write(f"Error: {exc}")
            os._exit(1)  # as Django's own runserver does: sys.exit does not stop the reloader's thread
        access.announce(self.stdout)
        super().inner_run(*args, **options)
