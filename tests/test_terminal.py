"""What the commands print: a bar per stage redrawn in place on a terminal, a few plain lines
anywhere else, the files that failed or were skipped by name, and no traceback on a fresh
data folder (each command sets up the database it needs)."""
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.utils import timezone

from explorer.cli import LISTED, summarize
from explorer.models import Collection, Job, Source, WorkerHeartbeat
from tests.conftest import ROOT, worker_env
from tests.media import make_video

STAGE_LINE = re.compile(r"^ *([a-z]+)  (done in|failed after|cancelled after) ")


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


@pytest.mark.worker  # it starts its own workers
def test_piped_output_is_a_line_per_stage_and_names_the_files_it_passed_over(tmp_path):
    media = tmp_path / "media"
    make_video(media / "one.mp4", seconds=2)
    make_video(media / "two.mp4", seconds=1, source="mandelbrot")
    (media / "broken.mp4").write_text("not a video")
    for i in range(LISTED + 2):
        (media / f"note {i:02d}.txt").write_text("not media")
    env = fresh_env(tmp_path / "data")  # never migrated: ingest sets it up
    result = manage("ingest", media, "--every", "10", "--workers", "1", env=env, timeout=300)
    output = result.stdout + result.stderr
    lines = output.splitlines()

    assert result.returncode == 1 and "Traceback" not in output, output  # partial: broken.mp4
    assert "Setting up the database" in output
    assert "\r" not in output and len(lines) < 35, output
    stages = [m.group(1) for m in map(STAGE_LINE.match, lines) if m]
    assert len(stages) == len(set(stages)) and {"sample", "features", "pca", "layout"} <= set(stages), output
    assert all(m.group(2) == "done in" for m in map(STAGE_LINE.match, lines) if m), output
    assert f"FAILED  {media / 'broken.mp4'}: not a video" in output
    named = [line for line in lines if line.startswith("  skipped ")]
    assert named == [f"  skipped {media / f'note {i:02d}.txt'}: not a video or photo (unknown file extension)"
                     for i in range(LISTED)], output
    assert "  ... and 2 more skipped (-v 2 lists them all" in output
    # The local worker's log went to its file, not to the terminal.
    worker_log = (tmp_path / "data" / "logs" / "worker.log").read_text()
    assert "Task workers.tasks" in worker_log and "Task workers.tasks" not in output
    assert "celery@" not in output and "No hostname was supplied" not in output
    shutil.rmtree(tmp_path / "data")
    shutil.rmtree(media)


def run_in_terminal(args, env, timeout=180, columns=100):
    """Run a command with a pseudo-terminal as its standard streams; returns (code, output)."""
    import fcntl
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "manage.py", *map(str, args)], cwd=ROOT, env=env,
                               stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the command ended and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


@pytest.mark.django_db(transaction=True)
def test_on_a_terminal_each_stage_is_one_bar_redrawn_in_place(worker, media_root):
    folder = media_root / "terminal"
    make_video(folder / "clip.mp4", seconds=12, size="1280x720")  # sampled in a few seconds, every second frame
    deadline = time.monotonic() + 60  # each test starts with empty tables: the worker's next heartbeat
    while not WorkerHeartbeat.alive().exists():
        assert time.monotonic() < deadline, "no worker heartbeat"
        time.sleep(0.1)
    code, output = run_in_terminal(["ingest", folder, "--collection", "terminal", "--every", "2", "--sample-only"],
                                   worker_env())
    shutil.rmtree(folder)

    assert code == 0, output
    lines = output.split("\r\n")  # the terminal turns each newline into \r\n
    assert len(lines) < 12, output
    sample = [line for line in lines if "  sample |" in line]
    assert len(sample) == 1, output  # one line on the screen...
    drawings = [part for part in sample[0].split("\r") if part.strip()]
    assert len(drawings) >= 3 and all(part.startswith("  sample |") for part in drawings), output  # ...redrawn
    assert re.match(r"  sample \|█{30}\| 100% 00:\d\d *$", drawings[-1]), drawings[-1]
    assert "Job " in output and "succeeded: 1 file(s) sampled into 180 frame(s)" in output


@pytest.mark.django_db
def test_the_summary_names_the_first_files_and_counts_the_rest_the_api_lists_all(client):
    collection = Collection.objects.create(name="summary")
    job = Job.objects.create(collection=collection, status=Job.Status.PARTIAL, stage="done", message="m",
                             skipped=[{"path": f"/m/{i:02d}.txt", "reason": "not media"} for i in range(LISTED + 3)])
    for i in range(2):
        job.sources.add(Source.objects.create(collection=collection, path=f"/m/bad{i}.mp4", checksum=f"c{i}",
                                              size=1, mtime=0, kind="video", status=Source.Status.FAILED,
                                              error="decoder said no"))
    out = io.StringIO()
    assert not summarize(job, out)
    text = out.getvalue()
    assert "  FAILED  /m/bad0.mp4: decoder said no\n  FAILED  /m/bad1.mp4: decoder said no\n" in text
    assert text.count("  skipped ") == LISTED and f"  skipped /m/{LISTED - 1:02d}.txt: not media\n" in text
    assert (f"  ... and 3 more skipped (-v 2 lists them all; so do the collection's page and /api/jobs/{job.pk}/)"
            in text)
    everything = io.StringIO()
    summarize(job, everything, verbosity=2)
    assert everything.getvalue().count("  skipped ") == LISTED + 3 and "more skipped" not in everything.getvalue()

    body = client.get(f"/api/jobs/{job.pk}/").json()
    assert len(body["skipped"]) == LISTED + 3
    assert [(f["path"], f["error"]) for f in body["failed"]] == [("/m/bad0.mp4", "decoder said no"),
                                                                  ("/m/bad1.mp4", "decoder said no")]
    [listed] = [j for j in client.get(f"/api/jobs/?collection={collection.pk}").json()["results"]]
    assert listed["failed"] == body["failed"]


@pytest.mark.django_db
def test_stages_that_went_by_between_two_looks_are_shown_with_their_own_times():
    """A stage may begin and end between two of the command's looks at the job (PCA of a few
    frames takes a fraction of a second): the job's log of finished stages still shows it."""
    from explorer.progress import follow
    from workers import lifecycle

    collection = Collection.objects.create(name="quick stages")
    source = Source.objects.create(collection=collection, path="/m/a.mp4", checksum="a", size=1, mtime=0,
                                   kind="video", status=Source.Status.READY, frame_count=5)
    job = Job.objects.create(collection=collection, kind=Job.Kind.TRAIN, stage="features", params={},
                             status=Job.Status.RUNNING, started_at=timezone.now() - timedelta(seconds=30))
    job.sources.add(source)
    walked = ("features", "pca", "train", "layout", "cluster", "duplicates")
    for stage in walked:  # all before the command looks
        assert lifecycle.advance(job.pk, stage)
    out = io.StringIO()
    follow(Job.objects.get(pk=job.pk), out)
    shown = [match.group(1) for line in out.getvalue().splitlines() if (match := STAGE_LINE.match(line))]
    assert shown == list(walked), out.getvalue()
    assert "features  done in 30 s" in out.getvalue(), out.getvalue()  # from the job's start to its end
