from django.core.management.base import CommandError

from explorer.cli import LocalWorkers, add_workers_argument, collection_named, deliver
from explorer.progress import follow
from explorer.database import DatabaseCommand
from explorer.jobs import NotReady, start_poster
from explorer.models import Poster
from workers.pipeline.posters import PosterError


def pair(kind, separator):
    def parse(text):
        try:
            a, b = text.lower().split(separator)
            return kind(a), kind(b)
        except ValueError:
            raise ValueError(f"expected two numbers like 11{separator}18, got {text!r}") from None
    parse.__name__ = f"pair of {kind.__name__}"
    return parse


class Command(DatabaseCommand):
    help = ("Render a poster of a region of a collection's map: PNG, TIFF or PDF, from the frame store "
            "(preview) or the source files (print). Without --centre and --width, the whole map.")

    def add_arguments(self, parser):
        parser.add_argument("collection", help="collection name or id")
        parser.add_argument("--centre", type=pair(float, ","), default=(0.0, 0.0), metavar="X,Y",
                            help="centre of the window on the map, each -1 to 1 (default 0,0)")
        parser.add_argument("--width", type=float, default=2.0,
                            help="width of the window in map units; the map spans -1 to 1 (default 2: all of it)")
        parser.add_argument("--grid", type=pair(int, "x"), default=(11, 18), metavar="COLSxROWS",
                            help="cells across and down (default 11x18, the article's poster)")
        parser.add_argument("--tile", type=pair(int, "x"), default=(534, 300), metavar="WxH",
                            help="pixels per cell (default 534x300)")
        parser.add_argument("--rotation", type=float, default=0.0, metavar="DEGREES",
                            help="turn the window on the map counter-clockwise by this much (default 0)")
        parser.add_argument("--format", default="png", help="png, tiff or pdf (default png)")
        parser.add_argument("--quality", default="preview",
                            help="preview: cells from the frame store (fast); print: frames decoded again from "
                                 "the source files, sharper for cells larger than the stored frames "
                                 "(default preview)")
        parser.add_argument("--empty", default="blank",
                            help="cells with no frame near their centre: blank, or nearest (the nearest frame "
                                 "not used elsewhere) (default blank)")
        parser.add_argument("--width-mm", type=float, metavar="MM",
                            help="width on paper in millimetres: with --dpi it sets the pixel size, instead of "
                                 "--tile")
        parser.add_argument("--dpi", type=float, default=300.0,
                            help="dots per inch on paper: the resolution written in the file, and with --width-mm "
                                 "the pixel size (default 300)")
        parser.add_argument("--mode", default="grid",
                            help="grid: a frame per cell; scatter: the frames' cut-outs (plain backgrounds removed, "
                                 "see `manage.py cutouts`) at their exact places, each in a box of one cell's size "
                                 "(default grid)")
        parser.add_argument("--overlap", type=float, default=0.1,
                            help="scatter: how much of a cut-out's box those drawn above it may hide; a frame that "
                                 "would be hidden more is left out, 0 to 1 (default 0.1)")
        parser.add_argument("--background", default="white",
                            help="scatter: white, transparent (PNG and TIFF) or a colour as #rrggbb (default white)")
        parser.add_argument("--again", type=int, metavar="POSTER",
                            help="render poster POSTER again with its parameters (on the current map)")
        parser.add_argument("--out", metavar="FILE",
                            help="copy the finished poster to FILE (it stays under DATA_DIR too)")
        add_workers_argument(parser)

    def handle(self, *args, **options):
        collection = collection_named(options["collection"])
        if options["again"]:
            earlier = Poster.objects.filter(pk=options["again"], collection=collection).first()
            if earlier is None:
                raise CommandError(f"collection {collection.name!r} has no poster {options['again']}")
            params = earlier.params
        else:
            (x, y), (columns, rows), (tile_width, tile_height) = options["centre"], options["grid"], options["tile"]
            params = {"centre_x": x, "centre_y": y, "window_width": options["width"], "columns": columns,
                      "rows": rows, "tile_width": tile_width, "tile_height": tile_height,
                      "rotation": options["rotation"], "format": options["format"], "quality": options["quality"],
                      "empty": options["empty"], "width_mm": options["width_mm"], "dpi": options["dpi"],
                      "mode": options["mode"], "overlap": options["overlap"], "background": options["background"]}
        with LocalWorkers(options["workers"], self.stdout):
            try:
                poster = start_poster(collection, params, again=options["again"])
            except (PosterError, NotReady) as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{'Already rendering' if poster.reused else 'Rendering'} poster {poster.pk} "
                              f"of {collection.name!r} (job {poster.job_id})\n")
            job = follow(poster.job, self.stderr)
        path, ok = deliver(poster, job, options["out"], self.stdout, options["verbosity"], f"poster {poster.pk}")
        drawn = "cut-outs" if poster.params.get("mode") == "scatter" else "cells"
        self.stdout.write(f"Poster {poster.pk}: {poster.width}x{poster.height} pixels, {poster.cells} {drawn}, {path}\n")
        if not ok:
            raise CommandError(f"poster {poster.pk}: {job.status}, see above")
