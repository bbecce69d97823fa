from django.conf import settings
from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, summarize
from explorer.database import DatabaseCommand
from explorer.jobs import start_clustering
from explorer.progress import follow
from workers.pipeline.clustering import DAMPING


class Command(DatabaseCommand):
    help = ("Group the frames of a collection's map into clusters and print them (count, sizes, "
            "cohesion). Labels stay with their frames.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--method", choices=["auto", "kmeans", "affinity"], default="auto",
                            help="auto (default) picks the number of clusters itself; kmeans needs --k; "
                                 "affinity is affinity propagation")
        parser.add_argument("--k", type=int, default=settings.CLUSTER_K, metavar="N",
                            help=f"number of clusters, for --method kmeans (default {settings.CLUSTER_K})")
        parser.add_argument("--preference", type=float, metavar="P",
                            help="affinity propagation's preference: lower (more negative) makes fewer clusters "
                                 "(default: the median similarity)")
        parser.add_argument("--damping", type=float, default=DAMPING, metavar="D",
                            help=f"affinity propagation's damping, 0.5 to 0.99 (default {DAMPING}); raise it when "
                                 "it does not settle")
        parser.add_argument("--over", choices=["frames", "clips"], default=settings.CLUSTER_OVER,
                            help="cluster each frame, or each clip (the mean of its CLIP_SECONDS of frames, so "
                                 f"a long static shot counts once per clip); default {settings.CLUSTER_OVER}")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        method = options["method"]
        if options["k"] < 1:
            raise CommandError("--k must be at least 1")
        if not 0.5 <= options["damping"] < 1:
            raise CommandError("--damping must be from 0.5 to 0.99")
        params = {"method": method, "over": options["over"]}
        if method == "kmeans":
            params["k"] = options["k"]
        if method == "affinity":
            params["damping"] = options["damping"]
            if options["preference"] is not None:
                params["preference"] = options["preference"]
        with LocalWorkers(options["workers"], self.stdout):
            try:
                job = start_clustering(collection, params)
            except ValueError as exc:  # NotReady too
                raise CommandError(str(exc)) from None
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout, options["verbosity"]):
            raise CommandError(f"clustering {job.status}")
        self.print_clusters(collection)

    def print_clusters(self, collection):
        from explorer.api_errors import Conflict
        from explorer.cluster_api import current_clusters

        collection.refresh_from_db()
        try:
            clustering, files, _ = current_clusters(collection)
        except Conflict as exc:
            raise CommandError(str(exc.detail)) from None
        self.stdout.write(f"{len(files)} cluster(s) of {len(files.members)} frame(s) by {clustering.params['method']} "
                          f"over {clustering.params.get('over', 'frames')}\n")
        self.stdout.write(f"{'cluster':>7}  {'size':>7}  {'cohesion':>8}  {'outliers':>8}\n")
        for cluster in files.clusters:
            flag = "  small" if cluster["small"] else ""
            self.stdout.write(f"{cluster['id']:>7}  {cluster['size']:>7}  {cluster['cohesion']:>8.3f}  "
                              f"{cluster['outliers']:>8}{flag}\n")
