"""The fresh-machine default: no REDIS_URL, no DATABASE_URL. `ingest` must start its
own workers on the embedded (filesystem) broker and SQLite, and stop them after."""
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.media import make_video

pytestmark = pytest.mark.worker  # it starts its own workers


def run(args, env, timeout=240):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_ingest_on_embedded_defaults_starts_and_stops_its_own_workers(tmp_path):
    make_video(tmp_path / "media" / "clip one.mp4", seconds=2)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "TASK_QUEUE")}
    env["DATA_DIR"] = str(tmp_path / "data")
    assert run(["migrate", "-v0"], env).returncode == 0

    result = run(["ingest", str(tmp_path / "media"), "--every", "10", "--workers", "1"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting 1 local worker process(es)" in result.stdout
    assert "succeeded: 1 file(s) sampled into 6 frame(s), map of 6 frame(s)" in result.stdout
    assert (tmp_path / "data" / "explorer.sqlite3").exists()
    # The filesystem broker did the carrying (the worker's banner names its transport).
    assert "transport:   filesystem://" in (tmp_path / "data" / "logs" / "worker.log").read_text()
    assert (tmp_path / "data" / "collections" / "1" / "embedding" / "layout.json").exists()
    # The local workers were stopped: none is left running with this data folder.
    leftovers = subprocess.run(["pgrep", "-f", "celery -A workers worker"], capture_output=True, text=True)
    for pid in leftovers.stdout.split():
        with open(f"/proc/{pid}/environ", "rb") as handle:
            assert f"DATA_DIR={tmp_path / 'data'}".encode() not in handle.read().split(b"\0")
