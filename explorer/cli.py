"""What the `ingest` and `explore` commands share: local workers, following a job
with a progress bar per stage, and the closing summary."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from tqdm import tqdm

from explorer.jobs import start_ingest
from explorer.models import COLLECTION_NAME, Collection, Job, Source, WorkerHeartbeat
from explorer.sampling_settings import sampling_params


def add_ingest_arguments(parser):
    parser.add_argument("paths", nargs="+", help="video or photo files and folders (searched recursively)")
    parser.add_argument("--collection", help="collection name (default: the first folder's name)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--every", type=int, help="keep one frame in EVERY (default: SAMPLE_EVERY, 20)")
    rate.add_argument("--fps", type=float, help="keep this many frames per second instead")
    parser.add_argument("--sample-only", action="store_true",
                        help="stop after sampling frames; do not place them on the map")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="local worker processes to start when no worker is running (default: CPU count)")


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
        log_dir = Path(settings.DATA_DIR) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "worker.log"
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


def follow(job, out, poll=0.3):
    """Show a progress bar per stage until the job finishes; returns the finished job."""
    bar, stage = None, None
    while True:
        job.refresh_from_db()
        if job.stage != stage and job.stage not in ("queued", "done"):
            if bar:
                bar.update(bar.total - bar.n)
                bar.close()
            stage = job.stage
            # In a log file rather than a terminal, a line every few seconds is plenty.
            bar = tqdm(total=1000, desc=f"{stage:>8}", file=out, dynamic_ncols=True,
                       mininterval=0.2 if out.isatty() else 5,
                       bar_format="{desc} |{bar}| {percentage:3.0f}% {elapsed}{postfix}")
        if bar:
            bar.update(int(job.progress * 1000) - bar.n)
            bar.set_postfix_str(job.message[:60], refresh=True)
        if job.finished:
            if bar:
                bar.update(bar.total - bar.n)
                bar.close()
            return job
        time.sleep(poll)


def summarize(job, out):
    """Print what happened to every file; returns True when everything succeeded."""
    out.write(f"\nJob {job.pk} {job.status}: {job.message}\n")
    if job.error:
        out.write(f"  error: {job.error}\n")
    failed = job.sources.filter(status=Source.Status.FAILED)
    warned = job.sources.filter(status=Source.Status.READY).exclude(warning="")
    for source in failed:
        out.write(f"  FAILED  {source.error}\n")
    for source in warned:
        out.write(f"  PARTIAL {source.path}: {source.warning}\n")
    for skip in job.skipped:
        out.write(f"  skipped {skip['path']}: {skip['reason']}\n")
    return job.status == Job.Status.SUCCEEDED


def run_ingest(options, out):
    collection = collection_for(options["collection"], options["paths"], options["every"], options["fps"])
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
