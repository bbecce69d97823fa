import csv
import sys

from django.core.management.base import CommandError

from explorer.cli import collection_named
from explorer.database import DatabaseCommand
from explorer.models import FrameLabel, Source
from explorer.predictions import current_predictions
from workers.pipeline.arrays import open_array


class Command(DatabaseCommand):
    help = ("Write the collection's map as CSV: one row per frame (source, timestamp, x, y, source_id, frame, "
            "cluster, label, and the tagger's predicted label with its probability).")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--csv", required=True, metavar="FILE", help="the file to write, or - for standard output")

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        try:
            index = open_array(collection.embedding_dir, "index")
            layout = open_array(collection.embedding_dir, "layout")
        except FileNotFoundError:
            raise CommandError(f"collection {collection.name!r} has no map yet: ingest or train it first") from None
        if len(index) != len(layout):
            raise CommandError("the map is being rebuilt (try again when its job has finished), or a "
                               f"retraining did not finish (run `manage.py train {collection.name}`)")
        paths = dict(Source.objects.filter(collection=collection).values_list("pk", "path"))
        clusters = _clusters_of_rows(collection, len(index))
        tagger, probabilities = current_predictions(collection)
        if probabilities is not None and len(probabilities) != len(index):
            probabilities = None
        labels = {(source, frame): name for source, frame, name in
                  FrameLabel.objects.filter(collection=collection).values_list("source_id", "frame", "label__name")}
        try:
            out = sys.stdout if options["csv"] == "-" else open(options["csv"], "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {options['csv']}: {exc.strerror}") from None
        try:
            writer = csv.writer(out)
            writer.writerow(["source", "timestamp", "x", "y", "source_id", "frame", "cluster", "label", "predicted",
                             "probability"])
            for row, ((source_id, frame, when), (x, y)) in enumerate(zip(index, layout)):
                writer.writerow([paths[source_id], f"{when:.6f}", f"{x:.6f}", f"{y:.6f}", source_id, frame,
                                 "" if clusters is None else int(clusters[row]),
                                 labels.get((int(source_id), int(frame)), ""),
                                 *_prediction(tagger, probabilities, row)])
        finally:
            if out is not sys.stdout:
                out.close()
        if out is not sys.stdout:
            self.stdout.write(f"{len(index)} frame(s) written to {options['csv']}\n")


def _prediction(tagger, probabilities, row):
    """The predicted label of a row and its probability; blanks when there are none."""
    if probabilities is None:
        return "", ""
    best = int(probabilities[row].argmax())
    return tagger.classes[best], f"{float(probabilities[row][best]):.4f}"


def _clusters_of_rows(collection, rows):
    """The cluster of each row of the collection's map, or None when its clusters were made
    from another map (they are being made again) or it has none."""
    from workers.pipeline.cluster_files import ClusterFiles

    clustering = collection.clustering
    if clustering is None or clustering.map_version != collection.embedding.get("map"):
        return None
    try:
        members = ClusterFiles(clustering.directory).labels()
    except FileNotFoundError:
        return None
    return members if len(members) == rows else None
