from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, deliver
from explorer.database import DatabaseCommand
from explorer.jobs import GIF_DEFAULTS, GifError, start_gif
from explorer.progress import follow
from workers.pipeline.palette import DISTANCES, SEEDINGS


def source_and_time(text):
    try:
        source, time = text.split(":")
        return {"source": int(source), "time": float(time)}
    except ValueError:
        raise ValueError(f"expected SOURCE:SECONDS like 12:3.5, got {text!r}") from None


source_and_time.__name__ = "SOURCE:SECONDS"


class Command(DatabaseCommand):
    help = ("Make an animated GIF of a clip, its colours quantized by k-means (each frame's clustering "
            "seeded with the previous frame's colours, so the palette does not flicker); prints how much it "
            "flickers next to the source.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--source", type=int, required=True, metavar="ID",
                            help="the video (or photo) of the clip: its id, as the map's panel and the API show")
        parser.add_argument("--start", type=float, default=0.0, metavar="S", help="seconds (default 0)")
        parser.add_argument("--stop", type=float, default=6.0, metavar="S", help="seconds (default 6)")
        parser.add_argument("--colours", type=int, default=GIF_DEFAULTS["colours"], metavar="K",
                            help=f"palette size, 2 to 256 (default {GIF_DEFAULTS['colours']})")
        parser.add_argument("--distance", choices=DISTANCES, default=GIF_DEFAULTS["distance"],
                            help="euclidean: k-means; manhattan: k-medians (default euclidean)")
        parser.add_argument("--seeding", choices=SEEDINGS, default=GIF_DEFAULTS["seeding"],
                            help="sequential: from the previous frame's colours; independent: afresh each frame "
                                 "(it flickers); global: one palette for the clip (default sequential)")
        parser.add_argument("--fps", type=float, default=GIF_DEFAULTS["fps"],
                            help=f"frames per second (default {GIF_DEFAULTS['fps']:g})")
        parser.add_argument("--width", type=int, default=GIF_DEFAULTS["width"],
                            help=f"pixels (default {GIF_DEFAULTS['width']})")
        reference = parser.add_mutually_exclusive_group()
        reference.add_argument("--palette-from", type=source_and_time, metavar="SOURCE:TIME",
                               help="take the colours of this frame of the collection (palette transfer)")
        reference.add_argument("--palette-image", metavar="FILE", help="take the colours of this picture")
        parser.add_argument("--out", metavar="FILE.gif", help="copy the GIF here (it stays under DATA_DIR too)")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        from workers.pipeline.palette import fit_reference
        from workers.pipeline.sampling import MediaError, read_photo

        collection = collection_named(options["collection"])
        source = collection.sources.filter(pk=options["source"]).first()
        if source is None:
            raise CommandError(f"collection {collection.name!r} has no source {options['source']} "
                               "(the map's panel and /api/sources/?collection=ID give the ids)")
        picture = None
        if options["palette_image"]:
            try:
                picture = fit_reference(np.asarray(read_photo(Path(options["palette_image"]).expanduser(),
                                                              settings.MAX_IMAGE_PIXELS)))
            except MediaError as exc:
                raise CommandError(str(exc)) from None
        params = {name: options[name] for name in ("colours", "distance", "seeding", "fps", "width")}
        params["palette_from"] = options["palette_from"]
        with LocalWorkers(options["workers"], self.stdout):
            try:
                gif = start_gif(collection, source, options["start"], options["stop"], params, palette_image=picture)
            except GifError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{'Already making' if gif.reused else 'Making'} GIF {gif.pk} of {source.path} "
                              f"{gif.start:g}-{gif.stop:g} s (job {gif.job_id})\n")
            job = follow(gif.job, self.stderr)
        path, ok = deliver(gif, job, options["out"], self.stdout, options["verbosity"], f"GIF {gif.pk}")
        self.stdout.write(f"GIF {gif.pk}: {gif.width}x{gif.height}, {gif.frames} frame(s), {gif.file_size:,} bytes, "
                          f"{path}\nFlicker {gif.flicker:.3f} (the source's own {gif.source_flicker:.3f}; "
                          "mean colour change, CIELAB ΔE, where the source is still)\n")
        if not ok:
            raise CommandError(f"GIF {gif.pk}: {job.status}, see above")
