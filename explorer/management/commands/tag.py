from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, summarize
from explorer.database import DatabaseCommand
from explorer.jobs import start_tagging
from explorer.models import Tagger
from explorer.progress import follow
from workers.pipeline.tagger import HEADS


class Command(DatabaseCommand):
    help = ("Train a tagger on the Xception features of the collection's labelled frames, make it the "
            "collection's, and tag every frame of its map. Prints the validation on held-out videos: accuracy, "
            "precision and recall per label, and the confusion matrix.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--head", choices=HEADS, default="softmax",
                            help="softmax (default): a regularized logistic regression; dense: one hidden layer, "
                                 "for many labels that a straight boundary does not separate")
        parser.add_argument("--fine-tune", action="store_true",
                            help="also fine-tune the top blocks of Xception on the labelled frames and print their "
                                 "validation beside the frozen head's (minutes on a CPU; the frozen head still tags)")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        with LocalWorkers(options["workers"], self.stdout):
            try:
                job = start_tagging(collection, options["head"], options["fine_tune"])
            except ValueError as exc:  # NotReady: no map, too few labels
                raise CommandError(str(exc)) from None
            job = follow(job, self.stderr)
        if not summarize(job, self.stdout, options["verbosity"]):
            raise CommandError(f"tagging {job.status}")
        self.stdout.write(tagger_text(Tagger.objects.get(job=job)))


def tagger_text(tagger):
    """The tagger's labels and its validation, as the terminal shows them."""
    report = tagger.report
    lines = [f"Tagger {tagger.version} ({tagger.head} head) learned {len(tagger.classes)} labels from "
             f"{report['frames']} frame(s) of {report['videos']} video(s)."]
    validation = report.get("validation")
    if validation is None:
        lines.append("Not validated: no video could be held out (every label's frames come from one video).")
        return "\n".join(lines) + "\n"
    lines.append(f"Validation on {validation['frames']} frame(s) of {validation['videos']} held-out video(s): "
                 f"accuracy {validation['accuracy']:.3f}")
    if report.get("unvalidated"):
        lines.append(f"Not validated (all their frames in one video): {', '.join(report['unvalidated'])}")
    width = max(len(name) for name in tagger.classes)
    lines.append(f"{'label':<{width}}  precision  recall  frames")
    for row in validation["per_label"]:
        lines.append(f"{row['label']:<{width}}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['frames']:>6}")
    lines.append("Confusion (rows: label given, columns: predicted, in the order above):")
    for name, counts in zip(tagger.classes, validation["confusion"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{count:>5}" for count in counts))
    tuned = report.get("fine_tuned")
    if tuned and "accuracy" in tuned:
        lines.append(f"Fine-tuned top blocks of Xception ({tuned['epochs']} epochs on {tuned['trained_frames']} "
                     f"frame(s)), on the same held-out frames: accuracy {tuned['accuracy']:.3f} "
                     f"(frozen head: {validation['accuracy']:.3f})")
    elif tuned:
        lines.append(f"Not fine-tuned: {tuned['note']}")
    return "\n".join(lines) + "\n"
