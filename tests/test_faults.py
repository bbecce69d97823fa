"""Faults while a job runs: the broker restarted or away at a stage hand-off, a whole
worker killed. The job still ends with exactly the right frames, nothing lost or
duplicated, and the worker process survives."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from explorer.models import Collection, Job
from tests.conftest import ROOT, worker_env
from tests.media import make_video
from workers.pipeline.arrays import open_array

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def start_cli_ingest(paths, collection, env, every=1, sample_only=True):
    """`manage.py ingest` in its own process, as a user would run it."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest", *map(str, paths), "--collection", collection, "--every", str(every),
         *(["--sample-only"] if sample_only else [])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_until(probe, timeout=120):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)
    return value


def assert_exact_frames(collection, expected_per_source, every=1):
    for source in collection.sources.all():
        index = open_array(source.frames_dir, "index")
        assert source.status == "ready" and source.frame_count == expected_per_source, source.path
        # None twice, none missing.
        assert list(index["frame"]) == list(range(0, expected_per_source * every, every))


def test_redis_restarted_mid_job_loses_its_queue_and_the_job_still_finishes(
        media_root, private_redis, spawn_worker):
    folder = media_root / "redis-restart"
    # Distinct files (a title each) with the same frames: same-content files would be one source.
    videos = [make_video(folder / f"v{i}.mp4", seconds=15, size="1280x720", extra=("-metadata", f"title=v{i}"))
              for i in range(3)]
    queue = f"restart-{uuid.uuid4().hex[:6]}"
    spawn_worker(concurrency=1, REDIS_URL=private_redis.url, TASK_QUEUE=queue)
    cli = start_cli_ingest(videos, "restart", worker_env(REDIS_URL=private_redis.url, TASK_QUEUE=queue))

    # One source is being sampled, the other two wait in Redis's queue...
    collection = wait_until(lambda: Collection.objects.filter(name="restart").first())
    wait_until(lambda: collection.sources.filter(status="running").exists())
    assert collection.sources.filter(status="pending").count() == 2, list(collection.sources.values_list("status", "progress"))
    # ...when Redis restarts and comes back empty.
    private_redis.stop()
    private_redis.start()

    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, output
    job = Job.objects.get(collection=collection)
    assert job.status == Job.Status.SUCCEEDED
    assert_exact_frames(collection, 450)


def test_a_whole_worker_killed_mid_sampling_is_noticed_and_its_work_sent_again(
        media_root, spawn_worker):
    folder = media_root / "worker-killed"
    # Long enough to be caught mid-sampling: a quiet machine decodes 300 frames of it in 0.6 s,
    # between two of the sample's progress reports (every 0.5 s); 1,200 frames take seconds.
    video = make_video(folder / "long.mp4", seconds=40, size="1280x720")
    queue = f"killed-{uuid.uuid4().hex[:6]}"
    doomed = spawn_worker(concurrency=1, TASK_QUEUE=queue)
    cli = start_cli_ingest([video], "killed", worker_env(TASK_QUEUE=queue, STALE_AFTER="3"), every=4)
    collection = wait_until(lambda: Collection.objects.filter(name="killed").first())
    wait_until(lambda: collection.sources.filter(status="running", progress__gt=0.1).exists())

    os.killpg(doomed.process.pid, signal.SIGKILL)  # the machine dies: no warm shutdown, no ack
    doomed.process.wait()
    spawn_worker(concurrency=1, TASK_QUEUE=queue, STALE_AFTER="3")  # another worker on that queue

    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, output
    assert_exact_frames(collection, 300, every=4)


@pytest.mark.parametrize("stale_after, seconds_away", [(20, 4), (3, 10)], ids=["back-while-it-waits", "resumed-by-recovery"])
def test_redis_away_at_a_stage_hand_off_and_the_job_still_finishes(
        media_root, private_redis, spawn_worker, stale_after, seconds_away):
    """Training ends while Redis is stopped: the job records its next stage (layout) and the
    message for it waits for the broker, up to STALE_AFTER; past that, the job is silent and
    the recovery of the workers resumes it at that stage once Redis is back."""
    folder = media_root / f"hand-off-{stale_after}"
    videos = [make_video(folder / f"v{i}.mp4", seconds=2, source=source)
              for i, source in enumerate(("testsrc2", "mandelbrot"))]
    queue = f"hand-off-{uuid.uuid4().hex[:6]}"
    env = {"REDIS_URL": private_redis.url, "TASK_QUEUE": queue, "STALE_AFTER": str(stale_after)}
    # Enough epochs for the test to see the stage running before it ends.
    worker = spawn_worker(concurrency=1, AUTOENCODER_EPOCHS="300", **env)
    name = f"hand-off-{stale_after}"
    cli = start_cli_ingest(videos, name, worker_env(**env), every=5, sample_only=False)
    job = wait_until(lambda: Job.objects.filter(collection__name=name, stage="train", claimed_by__gt="").first())

    private_redis.stop()
    wait_until(lambda: Job.objects.filter(pk=job.pk, stage="layout").exists())  # trained, handing over
    time.sleep(seconds_away)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.stage == "layout", (job.status, job.error)
    private_redis.start()

    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, output
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.collection.embedding["frames"] == 24, job.message
    given_up = "not sent, the broker is unreachable" in worker.log.read_text()
    assert given_up == (seconds_away > stale_after)  # the second case went through recovery


def waits_for_work(server):
    """Whether a worker's consumer waits for work on this Redis (a blocking pop on its queue):
    after a restart, it has reconnected, whether Celery noticed the outage (and logged a new
    connection) or redis-py reconnected under it without a word, as it may when the restart
    falls between two of its commands."""
    import redis

    return any(client.get("cmd", "").startswith(("brpop", "blpop", "bzpop"))
               for client in redis.Redis.from_url(server.url).client_list())


def test_a_worker_survives_redis_restarting_twice_while_it_works(media_root, private_redis, spawn_worker):
    """A long task runs while the worker, one pool process free, waits on Redis for more work:
    the state in which a lost connection used to kill the worker process on its way to
    reconnecting (celery 5.7.0; see workers/worker_side.py). The long task is one features chunk
    of 240 Xception crops: tens of seconds on any CPU, where two restarts take a few."""
    from explorer.jobs import cancel
    from explorer.models import WorkItem

    video = make_video(media_root / "restarted-twice" / "clip.mp4", seconds=4)
    queue = f"twice-{uuid.uuid4().hex[:6]}"
    env = {"REDIS_URL": private_redis.url, "TASK_QUEUE": queue, "FEATURE_CHUNK": "1000"}
    worker = spawn_worker(concurrency=2, **env)
    cli = start_cli_ingest([video], "restarted-twice", worker_env(**env), every=1, sample_only=False)
    collection = wait_until(lambda: Collection.objects.filter(name="restarted-twice").first())
    chunk = WorkItem.objects.filter(job__collection=collection, stage="features")

    for restart in (1, 2):
        assert wait_until(lambda: chunk.filter(status__in=("running", "done")).exists(), timeout=300)
        assert chunk.get().status == "running", "the chunk ended before the restart: nothing was tested"
        private_redis.stop()
        private_redis.start()
        wait_until(lambda: waits_for_work(private_redis) or worker.process.poll() is not None)
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]

    wait_until(lambda: chunk.get().status == "done", timeout=300)  # the task went on and acknowledged
    assert worker.process.poll() is None, worker.log.read_text()[-3000:]
    cancel(Job.objects.get(collection=collection))  # the rest of the job (PCA, training) is not the point
    cli.communicate(timeout=120)
    assert_exact_frames(collection, 120)


def make_photos(folder, names, size=(160, 120)):
    """Distinct photos (noise of a seed each), so that a row put in another's place shows."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        pixels = np.random.default_rng(seed).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize(size).save(folder / name, quality=90)
    return folder


def test_a_message_of_many_photos_with_a_broken_one_in_the_middle_keeps_the_others(media_root, spawn_worker):
    """Photos are sampled many to a message and described many to a network batch: a broken
    photo in the middle fails alone and is named, and every other photo gets its own features."""
    from explorer.models import Source, WorkItem
    from workers.pipeline.features import XceptionFeatures, chunk_name

    folder = make_photos(media_root / "batched", ["a.jpg", "b.jpg", "d.jpg", "e.jpg"])
    (folder / "c-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    make_video(folder / "f.mp4", seconds=1, size="320x240")  # 4:3: its frames are stored at another size
    queue = f"batched-{uuid.uuid4().hex[:6]}"
    env = {"TASK_QUEUE": queue, "FANOUT_SPREAD": "1"}  # one message for all, however few they are
    spawn_worker(concurrency=1, **env)
    cli = start_cli_ingest([folder], "batched", worker_env(**env), every=10, sample_only=False)
    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 1 and "c-broken.jpg" in output, output  # partial, and says which file

    sources = Source.objects.filter(collection__name="batched").order_by("pk")
    assert [Path(path).name for path in sources.values_list("path", flat=True)] == [
        "a.jpg", "b.jpg", "c-broken.jpg", "d.jpg", "e.jpg", "f.mp4"]  # the broken one mid-message
    assert len(set(sources.values_list("claimed_by", flat=True))) == 1  # one task sampled them all
    broken = sources.get(path__endswith="c-broken.jpg")
    assert broken.status == "failed" and "c-broken.jpg: not a readable image" in broken.error
    described = sources.exclude(pk=broken.pk)
    assert set(described.values_list("status", flat=True)) == {"ready"}
    items = WorkItem.objects.filter(job__collection__name="batched", stage="features")
    assert items.count() == 5 and set(items.values_list("status", flat=True)) == {"done"}
    assert len(set(items.values_list("claimed_by", flat=True))) == 1  # one network pass over photos and video
    alone = XceptionFeatures("random", precision="float32")
    for source in described:
        expected = alone.transform(open_array(source.frames_dir, "frames")).astype(np.float32)
        made = np.asarray(open_array(source.frames_dir, chunk_name(0)), dtype=np.float32)
        cosine = (made * expected).sum() / (np.linalg.norm(made) * np.linalg.norm(expected))
        assert made.shape == (source.frame_count, 4096) and cosine > 0.999, (source.path, cosine)


def test_a_worker_killed_mid_message_keeps_its_finished_files_and_the_rest_is_done_once(media_root, spawn_worker):
    folder = media_root / "killed-mid-message"
    videos = [make_video(folder / f"v{i}.mp4", seconds=8, size="1280x720", extra=("-metadata", f"title=v{i}"))
              for i in range(5)]
    queue = f"mid-message-{uuid.uuid4().hex[:6]}"
    env = {"TASK_QUEUE": queue, "FANOUT_SPREAD": "1", "SAMPLE_BATCH_BYTES": str(1 << 30), "STALE_AFTER": "3"}
    doomed = spawn_worker(concurrency=1, **env)
    cli = start_cli_ingest(videos, "killed-mid-message", worker_env(**env), every=4)
    collection = wait_until(lambda: Collection.objects.filter(name="killed-mid-message").first())
    sources = collection.sources.order_by("pk")
    wait_until(lambda: sources.filter(status="ready").count() >= 2 and sources.filter(status="running").exists())

    os.killpg(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait()
    at_work = set(sources.filter(status="running").values_list("pk", flat=True))
    finished = {source.pk: (source.claimed_by, (Path(source.frames_dir) / "frames.json").stat().st_mtime_ns)
                for source in sources.filter(status="ready")}
    assert len(finished) < len(videos), "the message ended before the kill: nothing was tested"
    spawn_worker(concurrency=1, **env)

    output, _ = cli.communicate(timeout=300)
    assert cli.returncode == 0, output
    assert_exact_frames(collection, 60, every=4)
    for source in sources:
        if source.pk in finished:  # kept as it was: not sampled again
            assert (source.claimed_by, (Path(source.frames_dir) / "frames.json").stat().st_mtime_ns,
                    source.attempts) == (*finished[source.pk], 1)
        else:  # the one at work when the worker died, once more; those after it, once
            assert source.attempts == (2 if source.pk in at_work else 1), (source.path, source.attempts)
