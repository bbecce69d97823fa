"""Commands that use the database make sure its tables are there before they start.

On SQLite (the default: a file in DATA_DIR that only this machine uses) a command applies
the missing migrations itself, so that `manage.py ingest` on a fresh data folder works
without a step to remember. Creating that file is part of creating the data folder, and
nobody else has a say in it.

On any other database (PostgreSQL) a command only says what to run: such a database is
shared by the web servers and the workers of a deployment, and its owner changes its
schema on purpose (after a backup, once, from one place, with the new code on every
machine), not whichever command happens to start first."""
import fcntl
from contextlib import contextmanager

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def unapplied_migrations(alias=DEFAULT_DB_ALIAS):
    """The migrations on disk that the database has not had, in the order they would run."""
    executor = MigrationExecutor(connections[alias])
    return [migration for migration, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]


@contextmanager
def _migration_lock():
    """One process at a time migrates the data folder's database: two commands started
    together on a fresh folder would otherwise both create the same tables."""
    path = settings.DATA_DIR / ".migrate.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_database(note, alias=DEFAULT_DB_ALIAS):
    """Apply the missing migrations to an SQLite database, saying so with `note(text)`;
    on other databases raise CommandError naming the command to run. Does nothing (one
    query) when the database is up to date."""
    if not unapplied_migrations(alias):
        return
    connection = connections[alias]
    if connection.vendor != "sqlite":
        pending = unapplied_migrations(alias)
        raise CommandError(
            f"the database ({connection.vendor}, {connection.settings_dict['NAME']}) lacks {len(pending)} "
            "migration(s) of this version: run `python manage.py migrate` first (once, with the same "
            "settings, from one machine)")
    with _migration_lock():
        pending = unapplied_migrations(alias)  # another command may have applied them meanwhile
        if pending:
            note(f"Setting up the database {connection.settings_dict['NAME']} "
                 f"({len(pending)} migration(s) to apply)\n")
            call_command("migrate", database=alias, interactive=False, verbosity=0)


class DatabaseCommand(BaseCommand):
    """A management command that needs the database: its tables are made ready (see
    prepare_database) before `handle` runs. The note goes to standard error, so that a
    command writing data to standard output (export --csv -) stays clean."""

    requires_migrations_checks = True

    def check_migrations(self):
        prepare_database(self.note)

    def note(self, text):
        self.stderr.write(text, style_func=str)  # a note, not in the red of errors
