from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_ingest_arguments, follow, run_ingest, summarize
from explorer.database import DatabaseCommand


class Command(DatabaseCommand):
    help = "Ingest video and photo files and folders into a collection, showing progress until done."

    def add_arguments(self, parser):
        add_ingest_arguments(parser)

    def handle(self, *args, **options):
        with LocalWorkers(options["workers"], self.stdout):
            collection, job = run_ingest(options, self.stdout)
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout):
            raise CommandError(f"ingest {job.status}: see above for what failed or was skipped")
