"""Ingest end to end: a real Celery worker process on the real Redis, the real
database, and media made by ffmpeg."""
import os
import shutil
import subprocess
import sys

import pytest

from explorer.jobs import start_ingest
from explorer.models import Collection, Job, WorkerHeartbeat
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import make_video
from workers.pipeline.arrays import open_array

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def folder(media_root, request):
    path = media_root / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def new_collection(name="c", every=10):
    return Collection.objects.create(name=name, sampling=sampling_params(every=every).as_dict())


def test_a_messy_folder_ingests_what_it_can_and_says_why_not_the_rest(worker, folder):
    make_video(folder / "holiday clip ü.mp4", seconds=2)
    make_video(folder / "sub" / "second.mkv", seconds=1, size="160x120")
    shutil.copy(folder / "holiday clip ü.mp4", folder / "sub" / "copy of holiday.mp4")
    (folder / "notes.txt").write_text("not media")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "fake.mp4").write_text("this is text pretending to be a video\n" * 10)
    os.symlink(folder / "gone.mp4", folder / "dangling.mp4")
    whole = make_video(folder / "whole.tmp.mp4", seconds=4, extra=("-movflags", "+faststart"))
    (folder / "truncated.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()

    collection = new_collection()
    job = wait_for_job(start_ingest(collection, [folder], embed=False))

    assert job.status == Job.Status.PARTIAL, job.message
    sources = {os.path.basename(s.path): s for s in collection.sources.all()}
    assert set(sources) == {"holiday clip ü.mp4", "second.mkv", "empty.mp4", "fake.mp4", "truncated.mp4"}
    assert sources["holiday clip ü.mp4"].status == "ready" and sources["holiday clip ü.mp4"].frame_count == 6
    assert sources["second.mkv"].status == "ready" and sources["second.mkv"].frame_count == 3
    assert sources["empty.mp4"].status == "failed" and "empty.mp4: empty file" in sources["empty.mp4"].error
    assert sources["fake.mp4"].status == "failed" and "fake.mp4: not a video" in sources["fake.mp4"].error
    truncated = sources["truncated.mp4"]
    assert truncated.status == "ready" and 0 < truncated.frame_count < 12 and truncated.warning
    reasons = {os.path.basename(s["path"]): s["reason"] for s in job.skipped}
    assert reasons["notes.txt"].startswith("not a video or photo")
    assert reasons["copy of holiday.mp4"] == f"same content as {sources['holiday clip ü.mp4'].path}"
    assert reasons["dangling.mp4"].startswith("cannot read the file")
    # Each says its kind: what is merely not media or a copy does not make the job partial.
    kinds = {os.path.basename(s["path"]): s["kind"] for s in job.skipped}
    assert kinds["notes.txt"] == Job.Skip.NOT_MEDIA and kinds["copy of holiday.mp4"] == Job.Skip.DUPLICATE
    assert kinds["dangling.mp4"] == Job.Skip.UNUSABLE
    # The frame store holds what the source row says.
    frames = open_array(sources["holiday clip ü.mp4"].frames_dir, "frames")
    index = open_array(sources["holiday clip ü.mp4"].frames_dir, "index")
    assert frames.shape[0] == 6 and list(index["frame"]) == [0, 10, 20, 30, 40, 50]


def test_named_pipes_are_listed_by_name_and_never_opened(worker, folder):
    make_video(folder / "real.mp4", seconds=1)
    os.mkfifo(folder / "fifo.mp4")  # opened for reading, it would wait for a writer forever
    os.mkfifo(folder / "named.mov")
    collection = new_collection()
    job = wait_for_job(start_ingest(collection, [folder, folder / "named.mov"], embed=False), timeout=120)

    assert job.status == Job.Status.PARTIAL, job.message
    [source] = collection.sources.all()
    assert source.path.endswith("real.mp4") and source.status == "ready" and source.frame_count == 3
    reasons = {os.path.basename(s["path"]): s["reason"] for s in job.skipped}
    assert reasons == {"fifo.mp4": "not a regular file (named pipe)", "named.mov": "not a regular file (named pipe)"}


def test_unchanged_files_ingested_again_are_a_no_op(worker, folder):
    make_video(folder / "a.mp4", seconds=1)
    collection = new_collection()
    first = wait_for_job(start_ingest(collection, [folder], embed=False))
    assert first.status == Job.Status.SUCCEEDED
    source = collection.sources.get()
    stamp = os.stat(source.frames_dir / "frames.bin").st_mtime_ns

    again = wait_for_job(start_ingest(collection, [folder, folder / "a.mp4"], embed=False))
    assert again.status == Job.Status.SUCCEEDED
    assert list(collection.sources.values_list("pk", flat=True)) == [source.pk]
    assert os.stat(source.frames_dir / "frames.bin").st_mtime_ns == stamp


def test_an_empty_folder_fails_the_job_with_the_reason(worker, folder):
    job = wait_for_job(start_ingest(new_collection(), [folder], embed=False))
    assert job.status == Job.Status.FAILED
    assert job.skipped == [{"path": str(folder), "reason": "folder holds no video or photo files",
                            "kind": Job.Skip.UNUSABLE}]


def test_photos_and_decompression_bombs(worker, folder):
    from tests.media import ffmpeg

    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=400x300", "-frames:v", "1", folder / "photo.jpg")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=3000x3000", "-frames:v", "1", folder / "bomb.png")
    collection = new_collection()
    job = wait_for_job(start_ingest(collection, [folder], embed=False))
    assert job.status == Job.Status.PARTIAL
    photo = collection.sources.get(path__endswith="photo.jpg")
    assert photo.kind == "photo" and photo.frame_count == 1 and (photo.width, photo.height) == (400, 300)
    assert open_array(photo.frames_dir, "frames").shape == (1, 300, 534, 3)
    bomb = collection.sources.get(path__endswith="bomb.png")
    assert bomb.status == "failed" and "bomb.png: image is larger than the limit" in bomb.error


def test_a_killed_pool_process_is_redelivered_and_the_frames_come_out_exact(worker, folder):
    video = make_video(folder / "long.mp4", seconds=20, size="1280x720", rate=30)
    collection = Collection.objects.create(name="kill", sampling=sampling_params(every=1).as_dict())
    job = start_ingest(collection, [video], embed=False)
    source = _wait_for(lambda: collection.sources.filter(status="running", progress__gt=0.15).first())
    for pid in worker.pool_pids():
        os.kill(pid, 9)
    job = wait_for_job(job, timeout=300)
    finished = collection.sources.get()
    assert job.status == Job.Status.SUCCEEDED and finished.status == "ready"
    # The same message finished it (redelivered, so the same task id holds the claim),
    # not a re-send by the stale-work recovery, which would carry a new id.
    assert finished.claimed_by == source.claimed_by != ""
    index = open_array(finished.frames_dir, "index")
    assert list(index["frame"]) == list(range(600)) and finished.frame_count == 600
    assert open_array(finished.frames_dir, "frames").shape == (600, 300, 533, 3)


def test_ingest_command_exits_non_zero_and_names_what_failed(worker, folder):
    make_video(folder / "good.mp4", seconds=1)
    (folder / "broken.mp4").write_text("nope")
    # Each test starts with empty tables: let the worker's next heartbeat land first.
    _wait_for(lambda: WorkerHeartbeat.alive().first())
    env = worker_env()
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest", str(folder), "--collection", "cli", "--every", "10", "--sample-only"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Workers are running" in result.stdout, output  # it used the running worker
    assert "FAILED" in result.stdout and "broken.mp4: not a video" in result.stdout, output
    assert "1 file(s) sampled into 3 frame(s), 1 failed" in result.stdout, output

    (folder / "broken.mp4").unlink()
    again = subprocess.run([sys.executable, "manage.py", "ingest", str(folder / "good.mp4"), "--collection", "cli",
                            "--sample-only"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr


def _wait_for(probe, timeout=120):
    import time

    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
    return value
