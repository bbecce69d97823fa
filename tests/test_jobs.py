"""Controlling jobs: cancelling one (command line, API), and starting one that is already
queued. The worker tests run a real worker process on its own queue, and start their jobs
from the command line, as a user would."""
import subprocess
import sys
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

from explorer.models import Collection, Job, Source, WorkItem
from workers import stages
from tests.conftest import ROOT, worker_env
from tests.media import make_video

pytestmark = pytest.mark.django_db(transaction=True)


def queued_job(collection, kind=Job.Kind.INGEST):
    return Job.objects.create(collection=collection, kind=kind, stage="scan", params={"paths": []})


def test_cancel_from_the_api_and_the_command_line(client):
    collection = Collection.objects.create(name="to cancel")
    job = queued_job(collection)
    Collection.objects.filter(pk=collection.pk).update(embedding_job=job)
    url = f"/api/jobs/{job.pk}/cancel/"

    assert client.post(url).status_code == 415  # a form from another site cannot cancel
    response = client.post(url, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and body["finished_at"] and body["message"] == "cancelled during scan"
    assert Collection.objects.get(pk=collection.pk).embedding_job is None  # its hold on the models is gone
    again = client.post(url, content_type="application/json")
    assert again.status_code == 409 and "has finished already (cancelled)" in again.json()["detail"]
    assert client.post("/api/jobs/999999/cancel/", content_type="application/json").status_code == 404

    other = queued_job(collection, Job.Kind.TRAIN)
    call_command("cancel", str(other.pk))
    other.refresh_from_db()
    assert other.status == Job.Status.CANCELLED
    with pytest.raises(CommandError, match="has finished already"):
        call_command("cancel", str(other.pk))
    with pytest.raises(CommandError, match="no job 999999"):
        call_command("cancel", "999999")

    schema = client.get("/api/openapi.json").json()
    assert set(schema["paths"]["/api/jobs/{id}/cancel/"]["post"]["responses"]) >= {"200", "409"}


def test_the_cancel_button_next_to_a_running_jobs_progress(browser, web_server):
    from tests.test_map_serving import wait_for

    collection = Collection.objects.create(name="page")
    job = queued_job(collection)  # never sent to a worker: it stays queued for the button
    browser.get(f"{web_server}/collections/{collection.pk}/")
    button = f'document.querySelector(".job[data-job=\\"{job.pk}\\"] progress + button.cancel")'
    wait_for(browser, button, message="a cancel button next to the progress bar")
    browser.execute_script(f"{button}.click()")
    wait_for(browser, f'document.querySelector(".job[data-job=\\"{job.pk}\\"].status-cancelled")',
             message="the job shown cancelled")
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert "cancel" not in browser.find_element("id", "jobs").text.replace("cancelled", "")  # no button left


def manage(*args, env):
    return subprocess.Popen([sys.executable, "manage.py", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def following(command):
    """True while the command runs (it follows its job); its output once it has ended."""
    assert command.poll() is None, command.stdout.read()
    return True


def wait_until(probe, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.1)
    return value


@pytest.mark.worker
def test_a_cancelled_job_stops_at_once_and_the_next_one_runs(client, media_root, spawn_worker):
    folder = media_root / "cancel"
    short = [make_video(folder / f"short{i}.mp4", seconds=2, source=source)
             for i, source in enumerate(("testsrc2", "mandelbrot"))]
    long = make_video(folder / "long" / "long.mp4", seconds=60, size="1280x720", rate=60)  # ~10 s to sample
    # One pool process: the next job runs only if the cancelled one let go of it. Training
    # 1000 epochs lasts some twenty seconds here.
    env = {"TASK_QUEUE": f"cancel-{uuid.uuid4().hex[:6]}", "AUTOENCODER_EPOCHS": "1000",
           "FRAME_WIDTH": "160", "FRAME_HEIGHT": "90"}
    worker = spawn_worker(concurrency=1, **env)
    env = worker_env(**env)
    first = manage("ingest", *short, "--collection", "cancel", "--every", "5", env=env)
    assert first.wait(timeout=300) == 0, first.stdout.read()
    collection = Collection.objects.get(name="cancel")
    served = collection.embedding["map"]

    # Cancelled while it samples a long video.
    sampling = manage("ingest", long, "--collection", "cancel", "--sample-only", env=env)
    source = wait_until(lambda: following(sampling) and Source.objects.filter(
        path=str(long), status="running", progress__gt=0.02).first())
    job = source.jobs.get()
    response = client.post(f"/api/jobs/{job.pk}/cancel/", content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_until(lambda: Source.objects.filter(pk=source.pk, status="pending").exists(), timeout=5,
               what="the sampling to stop")
    output, _ = sampling.communicate(timeout=60)
    assert sampling.returncode != 0 and f"Job {job.pk} cancelled" in output, output
    source.refresh_from_db()
    assert source.frame_count == 0 and source.attempts == 0
    assert not source.frames_dir.exists() or not any(source.frames_dir.iterdir())  # nothing half-written

    # Cancelled while it trains: the map being served stays.
    training = manage("train", "cancel", env=env)
    job = wait_until(lambda: following(training) and Job.objects.filter(
        kind="train", stage="train", progress__gt=0).first())
    response = client.post(f"/api/jobs/{job.pk}/cancel/", content_type="application/json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_until(lambda: f"stage train stopped: job {job.pk} was cancelled" in worker.log.read_text(), timeout=10,
               what="the training to stop")
    output, _ = training.communicate(timeout=60)
    assert training.returncode != 0 and "cancelled" in output, output
    collection.refresh_from_db()
    assert collection.embedding["map"] == served and (collection.maps_dir / served / "map.json").exists()
    assert collection.embedding_job is None

    # Nothing is left running, and the one pool process takes the next job.
    assert not Source.objects.filter(status="running").exists()
    assert not WorkItem.objects.filter(status="running").exists()
    after = make_video(folder / "after.mp4", seconds=1, source="smptebars")
    last = manage("ingest", after, "--collection", "cancel", "--sample-only", env=env)
    output, _ = last.communicate(timeout=120)
    assert last.returncode == 0, output
    assert Source.objects.get(path=str(after)).status == "ready"


# --- an identical job already queued -----------------------------------------------------

def with_frames(name):
    """A collection with sampled frames to train on (rows only: no worker runs here)."""
    collection = Collection.objects.create(name=name)
    Source.objects.create(collection=collection, path="/x.mp4", checksum=name, size=1, mtime=0, kind="video",
                          status="ready", frame_count=10)
    return collection


def with_a_map(collection):
    """Publish a small map for the collection, as a layout stage would."""
    import numpy as np

    from tests.test_map import INDEX_DTYPE, collection_arrays, walks, write_embedding
    from workers.pipeline.map_versions import map_version, publish_map

    sources, times, vectors = collection_arrays(walks(3, 20, dims=16))
    index = np.array(list(zip(sources, np.arange(len(sources)), times)), dtype=INDEX_DTYPE)
    layout = np.random.default_rng(0).uniform(-1, 1, (len(sources), 2)).astype(np.float32)
    write_embedding(collection.embedding_dir, index, vectors, layout)
    version = map_version({"stage": "test", "collection": collection.pk})
    publish_map(collection.embedding_dir, collection.maps_dir, version, dissimilar=2)
    collection.embedding = {"map": version, "frames": len(layout)}
    collection.save()


@pytest.mark.django_db  # in a transaction that is rolled back: nothing is ever sent to a worker
def test_an_identical_job_queued_or_running_is_returned_instead_of_another(client, media_root):
    collection = with_frames("dedupe")
    train = f"/api/collections/{collection.pk}/train/"
    first, second, third = (client.post(train, content_type="application/json") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (202, 200, 200)
    assert first.json()["id"] == second.json()["id"] == third.json()["id"]
    Job.objects.filter(pk=first.json()["id"]).update(status=Job.Status.RUNNING, stage="train")
    assert client.post(train, content_type="application/json").json()["id"] == first.json()["id"]
    client.post(f"/api/jobs/{first.json()['id']}/cancel/", content_type="application/json")
    after = client.post(train, content_type="application/json")
    assert after.status_code == 202 and after.json()["id"] != first.json()["id"]

    # An ingest is the same until it has listed its files: after that, new files may be there.
    (media_root / "dedupe").mkdir(exist_ok=True)
    ingest = f"/api/collections/{collection.pk}/ingest/"
    body = {"paths": [str(media_root / "dedupe")], "embed": False}
    first, second = (client.post(ingest, body, content_type="application/json") for _ in range(2))
    assert (first.status_code, second.status_code) == (202, 200) and first.json()["id"] == second.json()["id"]
    other = client.post(ingest, {**body, "embed": True}, content_type="application/json")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    Job.objects.filter(pk=first.json()["id"]).update(status=Job.Status.RUNNING, stage="sample")
    rescan = client.post(ingest, body, content_type="application/json")
    assert rescan.status_code == 202 and rescan.json()["id"] != first.json()["id"]

    # Posters: the same parameters on the same map.
    with_a_map(collection)
    poster = {"collection": collection.pk, "centre_x": 0.0, "centre_y": 0.0, "window_width": 2.0, "columns": 4,
              "rows": 3, "tile_width": 32, "tile_height": 18}
    first, second = (client.post("/api/posters/", poster, content_type="application/json") for _ in range(2))
    assert (first.status_code, second.status_code) == (202, 200), first.content
    assert first.json()["id"] == second.json()["id"] and first.json()["job"]["id"] == second.json()["job"]["id"]
    again = client.post(f"/api/posters/{first.json()['id']}/again/", content_type="application/json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    wider = client.post("/api/posters/", {**poster, "columns": 5}, content_type="application/json")
    assert wider.status_code == 202 and wider.json()["id"] != first.json()["id"]
    assert Job.objects.filter(kind="poster").count() == 2

    paths = client.get("/api/openapi.json").json()["paths"]
    for path in ("/api/collections/{id}/train/", "/api/collections/{id}/ingest/", "/api/posters/"):
        assert {"200", "202"} <= set(paths[path]["post"]["responses"]), path


def test_two_identical_requests_at_once_make_one_job(monkeypatch):
    """While one start holds its transaction open (as a slow request would), an identical
    start waits for it, then finds its job: one job, one message."""
    import threading

    from django.db import connection, transaction

    from explorer import jobs

    sent = []
    monkeypatch.setattr(jobs, "send", lambda *message, **options: sent.append(message))  # no worker here
    collection = with_frames("at once")
    holding, release, results = threading.Event(), threading.Event(), {}

    def first():
        try:
            with transaction.atomic():
                results["first"] = jobs.start_training(collection)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    def second():
        try:
            results["second"] = jobs.start_training(collection)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(30)
    threads[1].start()
    time.sleep(1.0)
    assert "second" not in results, "the second start did not wait for the first"
    release.set()
    for thread in threads:
        thread.join(60)
    assert results["second"].pk == results["first"].pk and results["second"].reused
    assert Job.objects.filter(collection=collection).count() == 1
    assert sent == [(stages.RUN_STAGE_TASK, results["first"].pk, "features")]
