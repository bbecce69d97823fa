"""Claiming pieces: one task at a time, the same message may come back, and a piece
whose worker keeps dying is given up on."""
import pytest

from explorer.models import Collection, Source
from workers.pieces import claim

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    collection = Collection.objects.create(name="claims")
    return Source.objects.create(collection=collection, path="/x.mp4", checksum="c", size=1, mtime=0,
                                 kind="video")


def test_a_duplicate_message_finds_the_piece_taken_but_a_redelivery_continues(source):
    assert claim(Source, source.pk, "task-a")
    assert not claim(Source, source.pk, "task-b")  # a second copy of the work: does nothing
    assert claim(Source, source.pk, "task-a")  # the same message, redelivered after its process died
    source.refresh_from_db()
    assert source.status == "running" and source.claimed_by == "task-a" and source.attempts == 2


def test_a_piece_whose_worker_keeps_dying_is_failed_with_the_reason(source, settings):
    settings.MAX_ATTEMPTS = 3
    for attempt in range(3):
        assert claim(Source, source.pk, f"task-{attempt}")
        Source.objects.filter(pk=source.pk).update(status="pending", claimed_by="")  # recovery re-sends it
    assert not claim(Source, source.pk, "task-3")
    source.refresh_from_db()
    assert source.status == "failed" and "gave up after 3 attempts" in source.error
