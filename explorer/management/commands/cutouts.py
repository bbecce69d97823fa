from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, summarize
from explorer.database import DatabaseCommand
from explorer.jobs import NotReady, start_cutouts
from explorer.progress import follow
from workers.pipeline.cutouts import BACKGROUNDS
from workers.pipeline.cutouts import DEFAULTS as CUTOUT_SETTINGS


class Command(DatabaseCommand):
    help = ("Cut every sampled frame of a collection out of its plain background: k-means on each frame's "
            "colours, the clusters of its border made transparent. The RGBA PNGs are kept beside the frames; "
            "`poster --mode scatter` draws them at the frames' places on the map.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--clusters", type=int, default=CUTOUT_SETTINGS["clusters"], metavar="K",
                            help=f"colour clusters per frame, 2 to 16 (default {CUTOUT_SETTINGS['clusters']})")
        parser.add_argument("--background", choices=BACKGROUNDS, default=CUTOUT_SETTINGS["background"],
                            help="corners: the clusters of the frame's border; first-pixel: the cluster of the "
                                 "top-left pixel (default corners)")
        parser.add_argument("--position", action="store_true",
                            help="cluster each pixel by where it is as well as by its colour: a background of the "
                                 "subject's colours, away from it, comes apart from it")
        add_workers_argument(parser, default=2)

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        with LocalWorkers(options["workers"], self.stdout):
            try:
                job = start_cutouts(collection, options["clusters"], options["background"], options["position"])
            except (ValueError, NotReady) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{'Already cutting out' if job.reused else 'Cutting out'} the frames of "
                              f"{collection.name!r} (job {job.pk})\n")
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout, options["verbosity"]):
            raise CommandError(f"job {job.pk}: {job.status}, see above")
