import sys

from django.core.management.base import CommandError

from explorer import labels
from explorer.cli import collection_named
from explorer.database import DatabaseCommand


class Command(DatabaseCommand):
    help = ("Import labels from a CSV (source,timestamp,label) or JSON file, or export the labelled "
            "frames. source is a file's path or name; the timestamp picks the nearest sampled frame "
            "(photos: 0).")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--import", dest="import_file", metavar="FILE",
                            help="apply the labels of FILE (.csv or .json); rows naming unknown files or times "
                                 "are listed and skipped")
        action.add_argument("--export", metavar="FILE",
                            help="write every labelled frame to FILE (.json for JSON, else CSV; - for standard "
                                 "output as CSV)")

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        if options["import_file"]:
            self.import_labels(collection, options["import_file"])
        else:
            self.export_labels(collection, options["export"])

    def import_labels(self, collection, path):
        try:
            with open(path, "rb") as handle:
                rows = labels.read_table(handle, path)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        except labels.LabelError as exc:
            raise CommandError(str(exc)) from None
        labelled, skipped = labels.import_rows(collection, rows, filename=path)
        for row in skipped:
            self.stderr.write(f"{path}:{row['line']}: skipped {row['source']} at {row['timestamp']}: {row['reason']}\n")
        self.stdout.write(f"{labelled} frame(s) labelled from {path}; {len(skipped)} row(s) skipped\n")

    def export_labels(self, collection, path):
        rows = labels.export_rows(collection)
        as_json = path.lower().endswith(".json")
        if path == "-":
            labels.write_table(rows, sys.stdout, as_json=False)
            return
        try:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                labels.write_table(rows, handle, as_json)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        self.stdout.write(f"{len(rows)} labelled frame(s) written to {path}\n")
