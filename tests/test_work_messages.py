"""A fanned-out stage's pieces travel in messages sized by work: how they are cut, and what
one message's task does when one of its pieces breaks or its job is cancelled."""
import numpy as np
import pytest

from explorer.models import Collection, Job, Source, WorkItem
from workers import lifecycle, pieces
from workers.pipeline.arrays import RowsOf
from workers.stages.describe import DESCRIBING
from workers.stages.ingest import SAMPLING

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr(pieces, "send", lambda *message, **options: sent.append(message) or True)
    return sent


def sampling_job(sizes, stage="sample"):
    collection = Collection.objects.create(name=f"messages {Collection.objects.count()}")
    job = Job.objects.create(collection=collection, kind=Job.Kind.INGEST, stage=stage, params={})
    for number, size in enumerate(sizes):
        job.sources.add(Source.objects.create(collection=collection, path=f"/m/{number}.jpg", checksum=str(number),
                                              size=size, mtime=0, kind="photo"))
    return job


def source_ids(job):
    return list(job.sources.order_by("pk").values_list("pk", flat=True))


def test_small_files_share_a_message_up_to_the_budget_and_a_large_one_goes_alone(settings):
    settings.SAMPLE_BATCH_BYTES, settings.FANOUT_SPREAD = 4, 1
    job = sampling_job([1, 1, 1, 30, 1, 1, 2, 1])
    a, b, c, large, d, e, f, g = source_ids(job)
    assert SAMPLING.messages(SAMPLING.of_job(job)) == [[a, b, c], [large], [d, e, f], [g]]


def test_a_stage_is_cut_into_at_least_fanout_spread_messages_so_every_worker_has_a_share(settings):
    settings.SAMPLE_BATCH_BYTES, settings.FANOUT_SPREAD = 1 << 30, 3
    job = sampling_job([1] * 7)
    messages = SAMPLING.messages(SAMPLING.of_job(job))
    assert [len(message) for message in messages] == [2, 2, 2, 1]
    assert sum(messages, []) == source_ids(job)  # every piece once, in order
    for pieces_count, spread in ((17, 16), (4, 3), (40, 16), (3, 16)):
        settings.FANOUT_SPREAD = spread
        job = sampling_job([1] * pieces_count)
        assert len(SAMPLING.messages(SAMPLING.of_job(job))) >= min(spread, pieces_count), (pieces_count, spread)


def test_feature_chunks_of_many_sources_share_a_message_up_to_feature_chunk_frames(settings):
    settings.FEATURE_CHUNK, settings.FANOUT_SPREAD = 8, 1
    job = sampling_job([1] * 3, stage="features")
    first, second, third = job.sources.order_by("pk")
    spans = [(first, 0, 8), (second, 0, 3), (second, 3, 6), (third, 0, 1), (third, 1, 4)]
    items = [WorkItem.objects.create(job=job, stage="features", source=source, start=start, stop=stop).pk
             for source, start, stop in spans]
    assert DESCRIBING.messages(DESCRIBING.of_job(job)) == [[items[0]], items[1:4], [items[4]]]


def test_a_piece_that_breaks_fails_alone_and_the_rest_of_its_message_is_done(no_broker):
    job = sampling_job([1, 1, 1])
    first, broken, last = source_ids(job)
    worked = []

    def work(job_id, source):
        worked.append(source.pk)
        if source.pk == broken:
            raise ValueError("no such luck")
        Source.objects.filter(pk=source.pk).update(status=Source.Status.READY)

    SAMPLING.run("task-1", job.pk, [first, broken, last], work)
    assert worked == [first, broken, last]
    states = dict(Source.objects.values_list("pk", "status"))
    assert states == {first: "ready", broken: "failed", last: "ready"}
    assert Source.objects.get(pk=broken).error == "internal error: ValueError: no such luck"
    job.refresh_from_db()
    assert job.stage != "sample"  # its last piece finished: the job moved on

    SAMPLING.run("task-2", job.pk, [first, last], work)  # the message again: its pieces are done
    assert worked == [first, broken, last]


def test_a_message_sent_before_batching_carries_one_id_and_still_works(no_broker):
    job = sampling_job([1])
    (only,) = source_ids(job)
    SAMPLING.run("task-1", job.pk, only, lambda job_id, source: Source.objects.filter(pk=source.pk).update(
        status=Source.Status.READY))
    assert Source.objects.get(pk=only).status == "ready"


def test_cancelled_mid_message_the_piece_at_work_and_those_after_it_stay_pending(no_broker):
    job = sampling_job([1, 1, 1])
    first, cancelled_at, last = source_ids(job)

    def work(job_id, source):
        if source.pk == cancelled_at:
            raise lifecycle.JobCancelled(job_id)
        Source.objects.filter(pk=source.pk).update(status=Source.Status.READY)

    SAMPLING.run("task-1", job.pk, [first, cancelled_at, last], work)
    rows = {pk: (status, attempts) for pk, status, attempts in Source.objects.values_list("pk", "status", "attempts")}
    assert rows == {first: ("ready", 1), cancelled_at: ("pending", 0), last: ("pending", 0)}


def test_pieces_worked_together_are_done_one_by_one_when_their_work_breaks_and_only_the_broken_one_fails(
        no_broker):
    job = sampling_job([1], stage="features")
    source = job.sources.get()
    items = [WorkItem.objects.create(job=job, stage="features", source=source, start=start, stop=start + 2).pk
             for start in (0, 2, 4)]
    calls = []

    def work(job_id, claimed):
        calls.append([item.pk for item in claimed])
        if items[1] in calls[-1]:
            raise RuntimeError("out of cheese")
        WorkItem.objects.filter(pk__in=calls[-1]).update(status="done")

    DESCRIBING.run_together("task-1", job.pk, items, work)
    assert calls == [items, [items[0]], [items[1]], [items[2]]]
    states = dict(WorkItem.objects.values_list("pk", "status"))
    assert states == {items[0]: "done", items[1]: "failed", items[2]: "done"}
    assert WorkItem.objects.get(pk=items[1]).error == "internal error: RuntimeError: out of cheese"


def test_a_task_that_fails_for_good_fails_only_the_piece_it_was_at_and_sends_the_rest_again(no_broker):
    from workers.celery import app

    job = sampling_job([1, 1, 1])
    done, at_work, not_reached = source_ids(job)
    Source.objects.filter(pk=done).update(status="ready", claimed_by="task-1")
    Source.objects.filter(pk=at_work).update(status="running", claimed_by="task-1")
    app.tasks[SAMPLING.task].on_failure(TimeoutError("time limit"), "task-1", (job.pk, [done, at_work, not_reached]),
                                        {}, None)
    rows = {pk: status for pk, status in Source.objects.values_list("pk", "status")}
    assert rows == {done: "ready", at_work: "failed", not_reached: "pending"}
    assert no_broker == [(SAMPLING.task, job.pk, [not_reached])]


def test_rows_of_several_arrays_read_as_one_and_split_back():
    arrays = [np.arange(6).reshape(3, 2), np.arange(6, 8).reshape(1, 2), np.empty((0, 2), int),
              np.arange(8, 18).reshape(5, 2)]
    joined = np.concatenate(arrays)
    rows = RowsOf(arrays)
    assert len(rows) == 9
    for start in range(10):
        for stop in range(start, 11):
            assert np.array_equal(rows[start:stop], joined[start:stop]), (start, stop)
    parts = rows.split(joined * 10)
    assert [part.tolist() for part in parts] == [(array * 10).tolist() for array in arrays]
    with pytest.raises(TypeError):
        rows[3]
    wide, narrow = np.zeros((2, 3, 5)), np.ones((2, 3, 4))  # frames of videos of other aspect ratios
    mixed = RowsOf([wide, narrow])
    assert isinstance(mixed[0:2], np.ndarray) and mixed[0:2].shape == (2, 3, 5)
    assert [row.shape for row in mixed[1:4]] == [(3, 5), (3, 4), (3, 4)]
