"""The `poster` stage: a region of a published map rendered as a printable mosaic, from the
frame store (preview) or from the source files at the frames' exact timestamps (print), or
as a scatter of the frames' cut-outs at their places."""
from django.conf import settings

from explorer.models import Job, Poster, Source
from workers import lifecycle
from workers.pieces import job_progress
from workers.pipeline.sampling import MediaError
from workers.stages import Report


def render_poster(job):
    """Render the job's poster from the map version it was asked of: frames assigned to
    cells, read from the frame store (preview) or the source files at their exact
    timestamps (print). A source that is gone leaves its cells blank, with a warning."""
    from workers.pipeline.map_versions import MapSnapshot
    from workers.pipeline.posters import PosterSpec

    collection, poster = job.collection, job.posters.get()
    spec = PosterSpec.from_dict(poster.params)
    warnings = []
    if not (collection.maps_dir / poster.map_version / "map.json").exists():
        current = collection.embedding.get("map")
        warnings.append({"path": "", "reason": f"map {poster.map_version} was replaced since; "
                                               f"made from the current map {current}", "kind": Job.Skip.WARNING})
        poster.map_version = current
        poster.save(update_fields=["map_version"])
    snapshot = MapSnapshot(collection.maps_dir / poster.map_version, collection.sources_dir)
    poster.file_path.parent.mkdir(parents=True, exist_ok=True)
    if spec.mode == "scatter":
        width, height, filled = _render_scatter(job, poster, spec, snapshot, warnings)
    else:
        width, height, filled = _render_grid(job, poster, spec, snapshot, warnings)
    Poster.objects.filter(pk=poster.pk).update(width=width, height=height, cells=filled,
                                               file_size=poster.file_path.stat().st_size)
    lifecycle.add_skipped(job, warnings)


def _render_grid(job, poster, spec, snapshot, warnings):
    from workers.pipeline.posters import assign_frames, render_poster

    lifecycle.update(job.pk, message=f"assigning frames to {spec.columns}x{spec.rows} cells")
    assignment = assign_frames(spec, snapshot.layout)
    fetch = _frame_store_pixels(snapshot, warnings) if spec.quality == "preview" else \
        _source_pixels(snapshot, warnings)
    lifecycle.update(job.pk, message=f"rendering {spec.pixel_size[0]}x{spec.pixel_size[1]} pixels ({spec.quality})")
    return render_poster(spec, assignment, fetch, poster.file_path, poster.collection.data_dir / "posters" / "work",
                         name=f"poster-{poster.pk}", progress=job_progress(job.pk, interval=1.0))


SCATTER_ROUNDS = 5  # placements made again without the frames whose cut-out came out empty


def _render_scatter(job, poster, spec, snapshot, warnings):
    """Cut-outs at their frames' places: those the collection's `cutouts` job made, else made
    now (and kept) with its settings. A frame whose cut-out is empty (all background) would
    take room showing nothing: it is left out and the frames placed again, a few rounds.
    Only whether each cut-out is empty stays in memory; the pixels are read back to draw."""
    import numpy as np

    from workers.pipeline.scatter import place_scatter, render_scatter
    from workers.stages.colour import cutout_folder, cutout_pixels, cutout_settings

    made_with, folders = cutout_settings(poster.collection), {}

    def cut_out(row):
        source, pixels = int(snapshot.index["source"][row]), snapshot.frame_pixels(row)
        if pixels is None:
            return None
        if source not in folders:
            folders[source] = cutout_folder(snapshot.sources_dir / str(source), made_with)
        return cutout_pixels(folders[source], row - snapshot.spans.rows(source)[0], pixels, made_with)

    xy, empty = np.array(snapshot.layout, dtype=np.float64), {}  # map row: its cut-out is empty (None: gone)
    progress = job_progress(job.pk, span=0.5, interval=1.0)
    for round_ in range(SCATTER_ROUNDS):
        placements = place_scatter(spec, xy)
        lifecycle.update(job.pk, message=f"cutting out {len(placements)} frame(s) (round {round_ + 1})")
        for done, (row, _, _) in enumerate(placements, 1):
            if row not in empty:
                rgba = cut_out(row)
                empty[row] = None if rgba is None else not rgba[..., 3].any()
            progress(done / len(placements))
        left_out = [row for row, _, _ in placements if empty[row]]
        if not left_out:
            break
        xy[left_out] = np.nan

    def fetch(items):
        for index, row in items:
            yield index, None if empty[row] in (None, True) else cut_out(row)  # an empty one is not drawn

    lifecycle.update(job.pk, message=f"rendering {spec.pixel_size[0]}x{spec.pixel_size[1]} pixels (scatter)")
    return render_scatter(spec, placements, fetch, poster.file_path, poster.collection.data_dir / "posters" / "work",
                          name=f"poster-{poster.pk}", progress=job_progress(job.pk, start=0.5, span=0.5, interval=1.0))


def _source_name(source_id, paths):
    return paths.get(source_id) or f"source {source_id} (removed from the collection)"


def _frame_store_pixels(snapshot, warnings):
    def fetch(cells):
        gone = {}
        for cell, row in cells:
            pixels = snapshot.frame_pixels(row)
            if pixels is None:
                source = int(snapshot.index["source"][row])
                gone[source] = gone.get(source, 0) + 1
            yield cell, pixels
        paths = dict(Source.objects.filter(pk__in=gone).values_list("pk", "path"))
        warnings.extend({"path": _source_name(source, paths),
                         "reason": f"its frames are gone from the frame store: {count} cell(s) left blank",
                         "kind": Job.Skip.WARNING}
                        for source, count in gone.items())
    return fetch


def _source_pixels(snapshot, warnings):
    """Cells grouped by source, each source read once in time order."""
    from workers.pipeline.sampling import full_resolution_frames

    def fetch(cells):
        by_source = {}
        for cell, row in cells:
            source, time = int(snapshot.index["source"][row]), float(snapshot.index["time"][row])
            by_source.setdefault(source, {}).setdefault(time, []).append(cell)
        paths = dict(Source.objects.filter(pk__in=by_source).values_list("pk", "path"))
        for source, cells_at in by_source.items():
            done = set()
            try:
                for time, pixels in full_resolution_frames(_source_name(source, paths), list(cells_at),
                                                            settings.MAX_IMAGE_PIXELS):
                    for cell in cells_at[time]:
                        done.add(cell)
                        yield cell, pixels
            except MediaError as exc:
                left = [cell for cells in cells_at.values() for cell in cells if cell not in done]
                warnings.append({"path": _source_name(source, paths),
                                 "reason": f"{exc}: {len(left)} cell(s) left blank", "kind": Job.Skip.WARNING})
                for cell in left:
                    yield cell, None
    return fetch


def report(job):
    poster = job.posters.first()
    if poster and poster.file_size:
        drawn = (f"{poster.cells} cut-out(s) drawn" if poster.params.get("mode") == "scatter"
                 else f"{poster.cells} cell(s) filled")
        return Report((f"poster {poster.width}x{poster.height} {poster.params['format'].upper()}, {drawn}",))
    return Report(("no poster",), fatal="no poster was made")
