"""Create a user (or change an existing one's role or password), optionally with an API token."""
import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from explorer.access import EDITOR, EDITORS_GROUP, VIEWER
from explorer.database import DatabaseCommand


class Command(DatabaseCommand):
    help = ("Create a user who signs in to the explorer, or change one: viewers browse, play and download; "
            "editors also ingest, train, label, render posters and delete.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="the user name to sign in with")
        parser.add_argument("--role", choices=(VIEWER, EDITOR), default=VIEWER,
                            help=f"{VIEWER}: browse, play and download; {EDITOR}: also ingest, train, label, "
                                 f"render posters and delete (default {VIEWER}: an existing user is given the role "
                                 f"named here, so give --role {EDITOR} again to keep an {EDITOR} one)")
        password = parser.add_mutually_exclusive_group()
        password.add_argument("--password-stdin", action="store_true",
                              help="read the password from standard input (for scripts)")
        password.add_argument("--no-password", action="store_true",
                              help="no password: the account can only use an API token")
        parser.add_argument("--token", action="store_true", help="print an API token for the user (created once)")

    def handle(self, *args, name, role, password_stdin, no_password, token, **options):
        User = get_user_model()
        user = User.objects.filter(username=name).first() or User(username=name)
        password = None
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        elif not no_password and (user.pk is None or not token):
            password = self._prompt()
        if password is not None:
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError("password refused: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            created = user.pk is None
            if password is not None:
                user.set_password(password)
            elif created:
                user.set_unusable_password()
            user.save()
            editors, _ = Group.objects.get_or_create(name=EDITORS_GROUP)
            (user.groups.add if role == EDITOR else user.groups.remove)(editors)
        self.stdout.write(f"{'Created' if created else 'Updated'} {role} {name!r}.\n")
        if token:
            from rest_framework.authtoken.models import Token

            key = Token.objects.get_or_create(user=user)[0].key
            self.stdout.write(f"API token: {key}\n(send it as the header  Authorization: Token {key})\n")

    def _prompt(self):
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask a password on: use --password-stdin or --no-password")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("the two passwords differ")
        return first
