from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_ingest_arguments, run_ingest, summarize
from explorer.progress import follow
from explorer.database import DatabaseCommand


class Command(DatabaseCommand):
    help = ("Ingest video and photo files and folders into a collection and place their frames on its map, "
            "showing progress until done: a bar per stage on a terminal, a line per stage otherwise. The "
            "summary names the first 10 files that failed or were skipped; -v 2 names all of them. "
            "`make ingest MEDIA=PATH ARGS='...'` runs it with ARGS added. Exits with status 1 unless the job "
            "succeeded: it is partial when a file failed, or was skipped for another reason than not being a "
            "video or photo or being a copy of one already in the collection.")

    def add_arguments(self, parser):
        add_ingest_arguments(parser)

    def handle(self, *args, **options):
        with LocalWorkers(options["workers"], self.stdout):
            collection, job = run_ingest(options, self.stdout)
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout, options["verbosity"]):
            raise CommandError(f"ingest {job.status}: see above for what failed or was skipped")
