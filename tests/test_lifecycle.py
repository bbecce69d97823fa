"""A job's walk through the registry's stages, and how it ends: status from data (the kinds
of what was skipped, the pieces that failed), never from the wording of a message."""
import importlib

import pytest

from explorer.models import Collection, Job, Source, WorkItem
from workers import lifecycle, stages
from workers.pipeline.arrays import write_json_atomic

pytestmark = pytest.mark.django_db


def make_job(kind=Job.Kind.INGEST, frames=0, **params):
    collection = Collection.objects.create(name=f"walk {Collection.objects.count()}")
    job = Job.objects.create(collection=collection, kind=kind, stage=stages.first_for(kind), params=params)
    if frames:
        source = Source.objects.create(collection=collection, path="/m/a.mp4", checksum="a", size=1, mtime=0,
                                       kind="video", status=Source.Status.READY, frame_count=frames)
        job.sources.add(source)
    return job


def walk(job):
    """The stages the job would go through, from its first."""
    names, stage = [job.stage], job.stage
    while (stage := lifecycle.next_stage(job, stage)) != stages.DONE:
        names.append(stage)
    return names


def test_each_kind_of_job_walks_the_stages_it_needs(settings):
    assert walk(make_job(frames=0)) == ["scan", "sample"]  # nothing sampled: nothing to place
    assert walk(make_job(frames=5, embed=False)) == ["scan", "sample"]  # --sample-only
    assert walk(make_job(frames=5)) == ["scan", "sample", "features", "pca", "train", "layout", "cluster",
                                        "duplicates"]
    assert walk(make_job(Job.Kind.TRAIN, frames=5)) == ["features", "pca", "train", "layout", "cluster", "duplicates"]
    assert walk(make_job(Job.Kind.POSTER, frames=5)) == ["poster"]
    assert walk(make_job(Job.Kind.CLUSTER, frames=5)) == ["cluster"]
    assert walk(make_job(Job.Kind.DUPLICATES, frames=5)) == ["duplicates"]
    settings.CLUSTER_AFTER_MAP = False  # a new map keeps the clusters it had (of the map before)
    settings.DUPLICATES_AFTER_MAP = False  # and the copies
    assert walk(make_job(frames=5)) == ["scan", "sample", "features", "pca", "train", "layout"]
    assert walk(make_job(Job.Kind.CLUSTER, frames=5)) == ["cluster"]
    assert walk(make_job(Job.Kind.DUPLICATES, frames=5)) == ["duplicates"]


def test_an_ingest_into_a_collection_with_a_current_model_places_frames_without_training(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    job = make_job(frames=5)
    models = job.collection.models_dir
    models.mkdir(parents=True)
    write_json_atomic(models / "pca.json", {"version": "p1"})
    write_json_atomic(models / "layout.json", {"version": "m1", "pca": "p1"})
    assert walk(job) == ["scan", "sample", "features", "pca", "layout", "cluster", "duplicates"]
    write_json_atomic(models / "pca.json", {"version": "p2"})  # a refit PCA: the model must follow
    assert "train" in walk(job)


def closed(job, skipped=(), failed_chunks=0):
    Job.objects.filter(pk=job.pk).update(skipped=list(skipped), stage=stages.DONE)
    source = job.sources.first()
    for start in range(failed_chunks):
        WorkItem.objects.create(job=job, stage="features", source=source, start=start, stop=start + 1,
                                status=WorkItem.Status.FAILED, error="broken")
    lifecycle.close(job.pk)
    return Job.objects.get(pk=job.pk)


def skip(name, kind):
    return {"path": f"/m/{name}", "reason": "whatever the words", "kind": kind}


def test_what_is_merely_not_media_or_a_copy_leaves_the_job_a_success():
    job = closed(make_job(frames=5, embed=False),
                 [skip("notes.txt", Job.Skip.NOT_MEDIA), skip("copy.mp4", Job.Skip.DUPLICATE)])
    assert job.status == Job.Status.SUCCEEDED and job.error == ""
    assert job.message == "1 file(s) sampled into 5 frame(s), 2 skipped"


@pytest.mark.parametrize("kind", [Job.Skip.UNUSABLE, Job.Skip.LEFT_OFF_MAP, Job.Skip.WARNING])
def test_a_file_that_could_not_be_used_makes_the_job_partial(kind):
    job = closed(make_job(frames=5, embed=False), [skip("notes.txt", Job.Skip.NOT_MEDIA), skip("x.mp4", kind)])
    assert job.status == Job.Status.PARTIAL


def test_failed_pieces_make_the_job_partial_and_say_so():
    job = closed(make_job(frames=5), failed_chunks=2)
    assert job.status == Job.Status.PARTIAL and "2 feature chunk(s) failed" in job.message


def test_an_ingest_that_sampled_nothing_failed():
    job = closed(make_job(frames=0))
    assert job.status == Job.Status.FAILED and job.error == "no file could be sampled"


def test_a_failed_job_says_where_it_failed_not_its_last_progress():
    job = make_job(frames=5)
    Job.objects.filter(pk=job.pk).update(stage="features", message="2 of 2 feature chunk(s) done")
    lifecycle.fail(job.pk, "XCEPTION_WEIGHTS=/nowhere: no such file")
    job.refresh_from_db()
    assert (job.status, job.message, job.error) == (
        Job.Status.FAILED, "failed during features", "XCEPTION_WEIGHTS=/nowhere: no such file")


def test_old_skipped_entries_get_their_kind_from_the_words_they_were_written_with():
    migration = importlib.import_module("explorer.migrations.0004_stage_registry_skip_kinds")
    assert [migration.kind_of(reason) for reason in (
        "not a video or photo (unknown file extension)", "same content as /m/a.mp4",
        "left off the map: chunk failed", "cannot read the file (Permission denied)",
        "map 0123456789abcdef was replaced since; made from the current map fedcba9876543210",
        "/m/a.mp4: no longer there: 3 cell(s) left blank")] == [
        Job.Skip.NOT_MEDIA, Job.Skip.DUPLICATE, Job.Skip.LEFT_OFF_MAP, Job.Skip.UNUSABLE, Job.Skip.WARNING,
        Job.Skip.WARNING]


def test_a_piece_task_that_crashes_fails_its_piece_and_the_job_goes_on(monkeypatch):
    """The worker's last word on a task that raised: a piece's failure is the piece's (the
    job goes on without it), any other task's is the job's."""
    from workers import pieces
    from workers.celery import app
    from workers.stages.ingest import SAMPLING  # declares the sampling task

    monkeypatch.setattr(pieces, "send", lambda *message, **options: True)  # no broker here
    job = make_job()
    Job.objects.filter(pk=job.pk).update(stage="sample")
    source = Source.objects.create(collection=job.collection, path="/m/b.mp4", checksum="b", size=1, mtime=0,
                                   kind="video", status=Source.Status.RUNNING, claimed_by="task-1")
    job.sources.add(source)
    app.tasks[SAMPLING.task].on_failure(RuntimeError("boom"), "task-1", (job.pk, source.pk), {}, None)
    source.refresh_from_db()
    job.refresh_from_db()
    assert (source.status, source.error) == (Source.Status.FAILED, "internal error: RuntimeError: boom")
    assert job.stage == stages.DONE and job.error == "no file could be sampled"  # it moved on and closed

    other = make_job(frames=5)
    Job.objects.filter(pk=other.pk).update(stage="pca")
    app.tasks[stages.RUN_STAGE_TASK].on_failure(MemoryError("too big"), "task-2", (other.pk, "pca"), {}, None)
    other.refresh_from_db()
    assert (other.status, other.error) == (Job.Status.FAILED, "stage pca failed: MemoryError: too big")
