"""What the commands print: no traceback on a fresh data folder (each command sets up the
database it needs)."""
import os
import shutil
import subprocess
import sys

import pytest
from django.core.management.base import CommandError

from tests.conftest import ROOT


def fresh_env(data_dir):
    """The fresh-machine defaults: SQLite and the embedded broker in a data folder of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "TASK_QUEUE")}
    env["DATA_DIR"] = str(data_dir)
    return env


def manage(*args, env, timeout=60):
    return subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_fresh_data_folder_is_set_up_by_the_first_command_that_needs_it(tmp_path):
    env = fresh_env(tmp_path / "data")
    first = manage("export", "holiday", "--csv", "-", env=env)
    assert first.returncode == 1 and "Traceback" not in first.stderr, first.stderr
    assert "Setting up the database" in first.stderr and "migration(s) to apply" in first.stderr
    assert "no collection 'holiday' (collections: none yet)" in first.stderr
    assert first.stdout == ""  # standard output is for the CSV: the note went to standard error
    again = manage("cancel", "7", env=env)
    assert again.returncode == 1 and "no job 7" in again.stderr and "Setting up" not in again.stderr, again.stderr
    shutil.rmtree(tmp_path / "data")


def test_other_databases_are_left_to_their_owner_with_the_command_to_run(monkeypatch):
    from django.db import connection

    from explorer import database

    monkeypatch.setattr(database, "unapplied_migrations", lambda alias="default": ["a migration"])
    monkeypatch.setattr(connection, "vendor", "postgresql")
    notes = []
    with pytest.raises(CommandError, match=r"lacks 1 migration\(s\) .*run `python manage.py migrate` first"):
        database.prepare_database(notes.append)
    assert notes == []
