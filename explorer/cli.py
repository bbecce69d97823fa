"""What the `ingest` and `explore` commands share: local workers, following a job
with a progress bar per stage, and the closing summary."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from explorer.jobs import start_ingest
from explorer.models import COLLECTION_NAME, Collection, Job, Source, WorkerHeartbeat
from explorer.sampling_settings import sampling_params


def add_ingest_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="video or photo files, and folders searched recursively for them")
    parser.add_argument("--collection", metavar="NAME",
                        help="the collection to add the files to, made if it does not exist "
                             "(default: the name of the first PATH)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--every", type=int, metavar="N",
                      help="keep one video frame in N (default: the SAMPLE_FPS setting when set, else "
                           "SAMPLE_EVERY, 20); a collection keeps the rate it was made with")
    rate.add_argument("--fps", type=float,
                      help="keep this many video frames per second instead (e.g. 1); a collection keeps the "
                           "rate it was made with")
    parser.add_argument("--sample-only", action="store_true",
                        help="only sample the frames (they show on the collection's page); leave the map as it "
                             "is: no features, PCA, training or layout. Ingest again without it (files "
                             "already sampled are not sampled again) or run `manage.py train` to map them")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="local worker processes to start when no worker is running (default: the number "
                             "of CPUs; their log: DATA_DIR/logs/worker.log). With workers running, the job "
                             "goes to them")


def add_workers_argument(parser, default=1):
    parser.add_argument("--workers", type=int, default=default, metavar="N",
                        help=f"local worker processes to start when no worker is running (default: {default}; "
                             "their log: DATA_DIR/logs/worker.log). With workers running, the job goes to them")


def collection_for(name, paths, every, fps):
    if not name:
        name = Path(paths[0]).expanduser().resolve().name or "collection"
    if every is not None and every < 1:
        raise CommandError("--every must be at least 1")
    if fps is not None and fps <= 0:
        raise CommandError("--fps must be positive")
    wanted = sampling_params(every=every, fps=fps).as_dict()
    if not Collection.objects.filter(name=name).exists():
        try:
            COLLECTION_NAME(name)
        except ValidationError as exc:
            raise CommandError(f"{name!r} cannot name a collection: {exc.messages[0]}; "
                               "give another with --collection") from None
    collection, created = Collection.objects.get_or_create(name=name, defaults={"sampling": wanted})
    if not created and (every is not None or fps is not None) and collection.sampling != wanted:
        raise CommandError(
            f"collection {name!r} already samples with {collection.sampling}; "
            "use --collection to start a new one with other settings")
    return collection


class LocalWorkers:
    """Starts Celery workers on this machine when none is alive, and stops them after."""

    def __init__(self, count, out):
        self.count, self.out, self.process = count, out, None

    def __enter__(self):
        # Stopped with SIGTERM (not only Ctrl-C), the command still cleans up on the way out:
        # its workers, and whatever else it started (explore's web server).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        if WorkerHeartbeat.alive().exists():
            self.out.write("Workers are running: the job goes to them.\n")
            return self
        settings.LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = settings.LOG_DIR / "worker.log"
        self.out.write(f"Starting {self.count} local worker process(es); log: {log_path}\n")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel", "INFO",
                 "--concurrency", str(self.count), "--hostname", f"local-{os.getpid()}@%h"],
                stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not WorkerHeartbeat.alive().filter(hostname__startswith=f"local-{os.getpid()}@").exists():
            if self.process.poll() is not None:
                raise CommandError(f"the local worker exited at start (code {self.process.returncode}); "
                                   f"see {log_path}")
            if time.monotonic() > deadline:
                raise CommandError(f"the local worker did not start within 60 s; see {log_path}")
            time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish the current task
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return False


LISTED = 10  # files named in the summary of each kind (failed, partial, skipped); -v 2 names them all


def summarize(job, out, verbosity=1):
    """Print the job's outcome and name the files that failed, came out partial or were
    skipped: the first LISTED of each, then how many more (all of them at verbosity 2, and
    always in the job's JSON at /api/jobs/ID/ and on the collection's page). Returns True
    when everything succeeded."""
    out.write(f"\nJob {job.pk} {job.status}: {job.message}\n")
    if job.error:
        out.write(f"  error: {job.error}\n")
    failed = job.sources.filter(status=Source.Status.FAILED).order_by("path")
    warned = job.sources.filter(status=Source.Status.READY).exclude(warning="").order_by("path")
    limit = None if verbosity >= 2 else LISTED
    in_job = f"the collection's page and /api/jobs/{job.pk}/"
    _listed(out, "failed", [f"  FAILED  {failure(source)}" for source in failed[:limit]], failed.count(), in_job)
    _listed(out, "partial", [f"  PARTIAL {source.path}: {source.warning}" for source in warned[:limit]],
            warned.count(), "the collection's page")
    _listed(out, "skipped", [f"  skipped {skip['path']}: {skip['reason']}" for skip in job.skipped[:limit]],
            len(job.skipped), in_job)
    return job.status == Job.Status.SUCCEEDED


def deliver(made, job, out, stdout, verbosity, what):
    """After a job that makes a file (a poster, a GIF): the summary, then the file copied to
    `out` when given. Returns (the file's path, whether the job succeeded); CommandError
    naming `what` when no file was made."""
    made.refresh_from_db()
    ok = summarize(job, stdout, verbosity)
    if not made.ready:
        raise CommandError(f"{what} was not made ({job.status})")
    path = made.file_path
    if out:
        path = Path(out).expanduser()
        shutil.copyfile(made.file_path, path)
    return path, ok


def failure(source):
    """What went wrong with a source, naming it (its error does, most of the time)."""
    return source.error if source.error.startswith(source.path) else f"{source.path}: {source.error}"


def _listed(out, kind, lines, total, also_in):
    for line in lines:
        out.write(line + "\n")
    if total > len(lines):
        out.write(f"  ... and {total - len(lines)} more {kind} (-v 2 lists them all; so do {also_in})\n")


def run_ingest(options, out):
    collection = collection_for(options["collection"], options["paths"], options["every"], options["fps"])
    if not options["sample_only"]:
        warn_about_random_weights(out)
    job = start_ingest(collection, [os.path.abspath(os.path.expanduser(p)) for p in options["paths"]],
                       embed=not options["sample_only"])
    if job.reused:
        out.write(f"The same ingest is already queued or running in collection {collection.name!r} "
                  f"(job {job.pk}): following it\n")
    else:
        out.write(f"Ingesting into collection {collection.name!r} (job {job.pk})\n")
    return collection, job


def warn_about_random_weights(out):
    if settings.XCEPTION_WEIGHTS == "random":
        out.write("WARNING: XCEPTION_WEIGHTS=random: the map will group colour and texture, not content. "
                  "Use it for tests and demos only.\n")


def collection_named(name):
    """A collection by name, or else by id (a folder named '2024' makes a collection named so)."""
    found = Collection.objects.filter(name=name).first()
    if found is None and name.isdigit():
        found = Collection.objects.filter(pk=int(name)).first()
    if found is None:
        known = ", ".join(Collection.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"no collection {name!r} (collections: {known})")
    return found
