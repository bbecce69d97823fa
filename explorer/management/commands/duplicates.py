import json

from django.conf import settings
from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, summarize
from explorer.database import DatabaseCommand
from explorer.jobs import NotReady, start_duplicates
from explorer.progress import follow


def clock(seconds):
    minutes, seconds = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{seconds:04.1f}"


class Command(DatabaseCommand):
    help = ("Find the copies in a collection's map: near-duplicate photos and frames, copies of videos and clips "
            "cut from longer ones, and the exact copies passed over when ingesting. Prints one line per group "
            "(kind, score, members), then each copy with its aligned time ranges. Looks again when the map changed "
            "since, or with --threshold or --again.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--threshold", type=float, metavar="P",
                            help="the least calibrated score called a copy, 0 to 1 (0.5: as likely a copy as not; "
                                 f"default: the last detection's, else {settings.DUPLICATES_THRESHOLD})")
        parser.add_argument("--again", action="store_true", help="look again even when nothing changed")
        parser.add_argument("--json", metavar="FILE", help="also write the report as JSON (the API's shape) to FILE")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        from explorer.api_errors import Conflict
        from explorer.copies_api import report

        collection = collection_named(options["collection"])
        detection = collection.duplicates
        threshold = options["threshold"]
        if threshold is None:
            threshold = detection.threshold if detection else settings.DUPLICATES_THRESHOLD
        up_to_date = (detection is not None and detection.threshold == threshold
                      and detection.map_version == collection.embedding.get("map"))
        if options["again"] or not up_to_date:
            with LocalWorkers(options["workers"], self.stdout):
                try:
                    job = start_duplicates(collection, threshold)
                except (NotReady, ValueError) as exc:
                    raise CommandError(str(exc)) from None
                job = follow(job, self.stderr)
            if not summarize(job, self.stdout, options["verbosity"]):
                raise CommandError(f"looking for copies {job.status}")
            collection.refresh_from_db()
        try:
            found = report(collection)
        except Conflict as exc:
            raise CommandError(str(exc.detail)) from None
        self.print_report(found)
        if options["json"]:
            with open(options["json"], "w", encoding="utf-8") as out:
                json.dump(found, out, indent=1, default=str)
            self.stdout.write(f"\nwrote {options['json']}\n")

    def print_report(self, found):
        groups = found["groups"]
        self.stdout.write(f"{len(groups)} group(s) of copies at score >= {found['threshold']}, "
                          f"{len(found['exact'])} file(s) with exact copies\n")
        for group in groups:
            names = {m["source"]: m["name"] for m in group["members"]}
            members = ", ".join(names[m["source"]] + (" (kept)" if m["source"] == group["representative"] else "")
                                for m in group["members"])
            self.stdout.write(f"\n#{group['id']:<3} {group['kind']:<14} {group['score']:.2f}  {members}\n")
            for relation in group["relations"]:
                copy, original = names.get(relation["copy"], "?"), names.get(relation["original"], "?")
                where = ""
                if relation["kind"] != "near-duplicate":
                    where = (f"  {clock(relation['copy_start'])}-{clock(relation['copy_stop'])} = "
                             f"{clock(relation['original_start'])}-{clock(relation['original_stop'])}")
                self.stdout.write(f"      {relation['kind']:<14} {relation['score']:.2f}  {copy} of {original}{where}\n")
        for exact in found["exact"]:
            self.stdout.write(f"\nexact copies of {exact['path']}: {', '.join(exact['copies'])}\n")
