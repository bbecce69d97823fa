"""The work-piece framework that every stage shares: claiming a stage or a piece for one
task, a heartbeat while it runs, progress written at a bounded rate, fanning a stage out
into pieces, and moving the job on when its stage is done.

A single-task stage is claimed by its `run_stage` task (workers/tasks.py). A fanned-out
stage (a FanOut: sampling a piece per source, features one per chunk of a source's frames)
sends its pieces in messages sized by work (many small photos in one, a long video alone),
and the last piece to finish moves the job on. Every claim is a conditional update, so a
redelivered or re-sent message is harmless: its finished pieces are skipped.
"""
import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from explorer.models import Job, WorkItem
from workers import lifecycle, stages
from workers.celery import send

log = logging.getLogger(__name__)


class Throttle:
    """Calls `write` at most every `interval` seconds (and always for the final 1.0)."""

    def __init__(self, write, interval=0.5):
        self.write, self.interval, self.last = write, interval, 0.0

    def __call__(self, fraction):
        now = time.monotonic()
        if fraction >= 1.0 or now - self.last >= self.interval:
            self.last = now
            self.write(fraction)


def job_progress(job_id, start=0.0, span=1.0, interval=0.5, **fields):
    """A progress callback for a single-task stage: the job's progress, as `start + span * f`."""
    return Throttle(lambda f: lifecycle.update(job_id, progress=start + span * f, **fields), interval)


def begin_next(job_id, finished_stage):
    """Move the job on and send its next stage as a message of its own: a stage never runs
    inside another's task, so each has its own retries, time limit and failure record.
    The move is recorded first: with the broker away, the message waits for it (up to
    STALE_AFTER), and past that the job, silent, is resumed at its new stage by recovery."""
    stage = lifecycle.advance(job_id, finished_stage)
    if stage and stage != stages.DONE:
        send(stages.RUN_STAGE_TASK, job_id, stage, patience=settings.STALE_AFTER)


def add_chunks(job, stage, source, size):
    """The pieces of a stage done over a source's frames: a WorkItem per `size` frames (one
    that exists already, from an earlier attempt, is kept)."""
    for start in range(0, source.frame_count, size):
        WorkItem.objects.get_or_create(job=job, stage=stage, source=source, start=start,
                                       defaults={"stop": min(start + size, source.frame_count)})


DONE, CANCELLED, BROKE = "done", "cancelled", "broke"  # how a piece's work ended (FanOut._work_on)


def pieces_of(message):
    """The piece ids a piece task's message carries: a list (one id in messages sent before
    pieces were batched)."""
    return [message] if isinstance(message, int) else list(message)


class FanOut:
    """A stage done as many pieces (the registry names the stage's FanOut). `task` is the
    name of the task that does the pieces of one message (declared with
    `workers.tasks.job_task(task, pieces=this)`). `model` holds the pieces (Source,
    WorkItem), `all_pieces` selects those of this stage, `job_link` is the lookup from a
    piece to its jobs; `done_label` is what the progress message counts. A piece goes on
    while any of its jobs is open: a file in two jobs' ingests is sampled while either is,
    and cancelling a job stops the pieces that no other job needs.

    Messages are sized by work: `work` is the expression of a piece's work (a file's bytes,
    a chunk's frames) and `budget()` how much of it one message carries; a piece larger
    than the budget goes alone, and the stage is cut into at least FANOUT_SPREAD messages."""

    def __init__(self, task, model, all_pieces, job_link, done_label, work, budget):
        self.task, self.model, self.all_pieces = task, model, all_pieces
        self.job_link, self.done_label = job_link, done_label
        self.work, self.budget = work, budget
        self.terminal = model.TERMINAL
        self._last_report = {}  # job id -> when this process last reported its progress

    @property
    def stage(self):
        """The registry's stage that this FanOut does."""
        return next(stage for stage in stages.FANNED_OUT if stage.load("pieces") is self)

    def of_job(self, job):
        return self.all_pieces().filter(**{self.job_link: job})

    def open_jobs_of(self, piece_ids):
        return Job.objects.exclude(status__in=Job.FINISHED).filter(
            pk__in=self.model.objects.filter(pk__in=pieces_of(piece_ids)).values(self.job_link))

    def messages(self, pieces):
        """The piece ids of `pieces` (a queryset), in order, cut into messages by work."""
        rows = list(pieces.order_by("pk").annotate(work_done_by_piece=self.work)
                    .values_list("pk", "work_done_by_piece"))
        most_pieces = max(1, len(rows) // settings.FANOUT_SPREAD)  # so that every worker gets a share
        budget, messages, load = self.budget(), [], 0
        for pk, work in rows:
            if not messages or len(messages[-1]) >= most_pieces or load + (work or 0) > budget:
                messages.append([])
                load = 0
            messages[-1].append(pk)
            load += work or 0
        return messages

    def run(self, task_id, job_id, message, work):
        """One message's task, a piece at a time: claim it, do `work(job_id, piece)` with a
        heartbeat, then the next. A piece that raises fails alone (named in its error) and
        the others go on; at the end, move the job on if that was its last piece."""
        for piece_id in pieces_of(message):
            if not lifecycle.is_open(job_id):
                break
            if not claim(self.model, piece_id, task_id):
                continue  # done already (a redelivered message), or another task's
            if self._work_on([piece_id], task_id, job_id, lambda job, pieces: work(job, pieces[0])) == CANCELLED:
                return
        self.finish_if_done(job_id)

    def run_together(self, task_id, job_id, message, work):
        """One message's task, its pieces as one: claim those that are free, do
        `work(job_id, pieces)` with a heartbeat on all of them (it marks each piece done),
        then move the job on if they were its last. Used where pieces are cheaper together
        (feature chunks: the network's batches span them). When the work breaks, each piece
        is done again on its own, so that only a broken one fails."""
        claimed = [pk for pk in pieces_of(message) if lifecycle.is_open(job_id) and claim(self.model, pk, task_id)]
        outcome = self._work_on(claimed, task_id, job_id, work) if claimed else DONE
        if outcome == BROKE and len(claimed) > 1:
            for piece_id in claimed:
                if (outcome := self._work_on([piece_id], task_id, job_id, work)) == CANCELLED:
                    break
        if outcome != CANCELLED:
            self.finish_if_done(job_id)

    def _work_on(self, piece_ids, task_id, job_id, work):
        """`work(job_id, pieces)` with a heartbeat on the pieces: DONE; CANCELLED (the job was,
        and the pieces are pending again); BROKE (it raised; a lone piece is failed with why)."""
        try:
            with heartbeat(self.model, piece_ids, "heartbeat"):
                work(job_id, list(self.model.objects.filter(pk__in=piece_ids).order_by("pk")))
            return DONE
        except lifecycle.JobCancelled:
            self._release(piece_ids, task_id, job_id)
            return CANCELLED
        except OperationalError:
            raise  # a busy database: the task is retried, with these pieces still its own
        except Exception as exc:
            log.exception("%s %s failed", self.model.__name__, piece_ids)
            if len(piece_ids) == 1:
                self._fail(piece_ids, f"internal error: {type(exc).__name__}: {exc}")
            return BROKE

    def _release(self, piece_ids, task_id, job_id):
        # Neither done nor failed: pending again for a later job, and this attempt does not
        # count towards MAX_ATTEMPTS.
        self.model.objects.filter(pk__in=piece_ids, claimed_by=task_id).exclude(status__in=self.terminal).update(
            status="pending", claimed_by="", progress=0.0, attempts=F("attempts") - 1)
        log.info("%s %s stopped: job %s was cancelled", self.model.__name__, piece_ids, job_id)

    def _fail(self, piece_ids, error):
        self.model.objects.filter(pk__in=piece_ids).exclude(status__in=self.terminal).update(
            status="failed", error=error, progress=1.0)

    def fail(self, job_id, message, error, task_id):
        """A piece task that failed for good (retries spent, the time limit): the piece it
        was at fails with `error`; the message's pieces it never reached are sent again."""
        self.model.objects.filter(pk__in=pieces_of(message), status="running", claimed_by=task_id).update(
            status="failed", error=error, progress=1.0)
        left = list(self.model.objects.filter(pk__in=pieces_of(message), status="pending")
                    .order_by("pk").values_list("pk", flat=True))
        if left:
            send(self.task, job_id, left, patience=settings.STALE_AFTER)
        self.finish_if_done(job_id)

    def progress_writer(self, job_id, piece_ids):
        """A progress callback for one piece (or pieces worked on together): their own
        progress, then, at most every half second, the job's. Raises JobCancelled once no
        open job wants the pieces."""
        def write(fraction):
            self.model.objects.filter(pk__in=pieces_of(piece_ids)).update(progress=fraction, heartbeat=timezone.now())
            now = time.monotonic()
            if now - self._last_report.get(job_id, 0.0) < 0.5:
                return  # many small pieces a second: the job's figures and the cancel check can wait
            self._last_report[job_id] = now
            if not self.open_jobs_of(piece_ids).exists():
                raise lifecycle.JobCancelled(job_id)
            self.report(job_id)

        return Throttle(write)

    def enqueue_unfinished(self, job):
        # Pending pieces only: a running one has a live worker, or recovery makes it
        # pending again once its heartbeat stops.
        for message in self.messages(self.of_job(job).filter(status="pending")):
            if not send(self.task, job.pk, message, patience=settings.STALE_AFTER):
                return  # the broker is away: recovery resumes the stage, which sends the rest
        self.finish_if_done(job.pk)

    def report(self, job_id):
        """Write the job's progress over the pieces (one aggregate query). Best effort: a
        busy database must not stop the work it reports on."""
        try:
            figures = self.of_job(Job.objects.get(pk=job_id)).aggregate(
                mean=Avg("progress"), total=Count("pk"), done=Count("pk", filter=Q(status__in=self.terminal)))
            if figures["total"]:
                lifecycle.update(job_id, progress=figures["mean"],
                                 message=f"{figures['done']} of {figures['total']} {self.done_label}")
        except OperationalError:
            log.warning("progress of job %s not written (database busy)", job_id)
        except lifecycle.JobCancelled:
            pass  # the piece goes on for another open job that needs it (see open_jobs_of)

    def finish_if_done(self, job_id):
        """Move the job on when its last piece is finished (any worker may call this)."""
        job = Job.objects.get(pk=job_id)
        if job.stage != self.stage.name:
            return
        self.report(job_id)
        if not self.of_job(job).exclude(status__in=self.terminal).exists():
            begin_next(job_id, job.stage)


def claim(model, pk, task_id):
    """Take a piece (a Source or a WorkItem) for this task: it must be pending, or already
    this task's (a redelivery of the same message after its process died). A duplicate
    message finds it taken and does nothing. A piece taken MAX_ATTEMPTS times already
    (its worker kept dying: out of memory, the time limit) is failed instead."""
    taken = model.objects.filter(pk=pk).filter(Q(status="pending") | Q(status="running", claimed_by=task_id)).update(
        status="running", claimed_by=task_id, heartbeat=timezone.now(), progress=0.0, attempts=F("attempts") + 1)
    if taken and model.objects.get(pk=pk).attempts > settings.MAX_ATTEMPTS:
        model.objects.filter(pk=pk).update(status="failed", progress=1.0, error=(
            f"gave up after {settings.MAX_ATTEMPTS} attempts: its worker stopped each time "
            "(out of memory? the task time limit?)"))
        return False
    return bool(taken)


def claim_stage(job_id, stage, task_id):
    """Take a single-task stage (or a fan-out stage's kick-off) for this task, unless a
    live task has it: one that is not this one and has reported within STALE_AFTER."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.STALE_AFTER)
    return bool(Job.objects.filter(pk=job_id, stage=stage).exclude(status__in=Job.FINISHED).filter(
        Q(claimed_by="") | Q(claimed_by=task_id) | Q(updated_at__lt=cutoff)
    ).update(claimed_by=task_id, updated_at=timezone.now()))


@contextmanager
def heartbeat(model, pks, field):
    """Touch `field` of the row (or rows, a list of pks) every STALE_AFTER/4 seconds while
    the block runs, whatever its progress reports do: a long training epoch or a huge file
    to hash is not a dead worker."""
    from django.db import connection

    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.STALE_AFTER / 4):
                model.objects.filter(pk__in=pieces_of(pks)).update(**{field: timezone.now()})
        except Exception:  # a missed beat only risks a duplicate, never a wrong result
            log.exception("heartbeat of %s %s failed", model.__name__, pks)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
