from django.core.management.base import CommandError

from explorer.database import DatabaseCommand
from explorer.jobs import cancel
from explorer.models import Job


class Command(DatabaseCommand):
    help = ("Cancel a queued or running job: what it has not begun is never run, a running stage stops at "
            "its next progress report, and the map being served stays as it is.")

    def add_arguments(self, parser):
        parser.add_argument("job", type=int, help="job id (as `ingest`, `train` and `poster` print it)")

    def handle(self, *args, **options):
        job = Job.objects.filter(pk=options["job"]).first()
        if job is None:
            raise CommandError(f"no job {options['job']}")
        if not cancel(job):
            job.refresh_from_db()
            raise CommandError(f"job {job.pk} has finished already ({job.status})")
        self.stdout.write(f"Job {job.pk} ({job.kind}) cancelled.\n")
