from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, summarize, warn_about_random_weights
from explorer.database import DatabaseCommand
from explorer.jobs import start_training
from explorer.progress import follow


class Command(DatabaseCommand):
    help = "Refit PCA and retrain the autoencoder on a whole collection, then place every frame again."

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        with LocalWorkers(options["workers"], self.stdout):
            warn_about_random_weights(self.stdout)
            try:
                job = start_training(collection)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            if job.reused:
                self.stdout.write(f"A retraining of {collection.name!r} is already queued or running "
                                  f"(job {job.pk}): following it\n")
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout, options["verbosity"]):
            raise CommandError(f"training {job.status}")
