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
