"""Django's development server (static files included), with the product's access rule:
bound to a loopback address it is login-free for its one local user and says so; bound to
anything else it requires login and a real DJANGO_SECRET_KEY (explorer/access.py). Like the
other commands it sets up a fresh SQLite database (explorer/database.py). Its log of
requests for JSON, tiles, frames and files goes to DATA_DIR/logs/web.log only; pages are
logged on the terminal too (explorer/logs.py)."""
import os
import sys

from django.contrib.staticfiles.management.commands.runserver import Command as StaticFilesRunserver
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from explorer import access
from explorer.database import prepare_database


class Command(StaticFilesRunserver):
    def inner_run(self, *args, **options):
        access.serve_login_free(self.addr)
        try:
            access.refuse_unsafe_start()
        except ImproperlyConfigured as exc:
            self.stderr.write(f"Error: {exc}")
            os._exit(1)  # as Django's own runserver does: sys.exit does not stop the reloader's thread
        access.announce(sys.stderr)  # with the errors: `explore` sends the server's chatter to its log
        super().inner_run(*args, **options)

    def check_migrations(self):
        # Called by inner_run, in the reloader's thread: an exception would not stop the process.
        try:
            prepare_database(lambda text: self.stderr.write(text, style_func=str))
        except CommandError as exc:
            self.stderr.write(f"Error: {exc}")
            os._exit(1)
