"""Files served to the browser: frame images from the frame store, map tiles and their
overlay of the tagger's predictions, the sources' own files for playback, posters, clip
GIFs and the map's hover previews. Only ids and
numbers reach the disk: every path is built from the collection's own folders or a
source's recorded path, so no parameter can point elsewhere; and a source's file is
served only while it is a regular file inside the allowed folders, checked at every
request on its real path."""
import mimetypes
import os
import re
import stat
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from explorer.models import Collection, Duplicates, Job, Source, Tagger
from explorer.served_maps import snapshot
from workers.celery import send
from workers.pipeline.allowed_folders import OutsideAllowedFolders, allowed_real_path
from workers.pipeline.arrays import open_array
from workers.pipeline.files import open_regular
from workers.pipeline.images import encode_jpeg, encode_png


@require_GET
def frame_image(request, source_id, number):
    """Frame `number` of a source as JPEG, at frame-store resolution."""
    source = get_object_or_404(Source, pk=source_id, status=Source.Status.READY)
    try:
        frames = open_array(source.frames_dir, "frames")
    except FileNotFoundError:
        raise Http404(f"source {source_id} has no frames on disk") from None
    if not 0 <= number < frames.shape[0]:
        raise Http404(f"source {source_id} has frames 0 to {frames.shape[0] - 1}, not {number}")
    response = HttpResponse(encode_jpeg(frames[number]), content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=86400"  # a source's frames never change in place
    return response


@require_GET
def tile(request, collection_id, version, zoom, column, row, scale=1):
    """A map tile as JPEG (`scale` 2, the URL's @2x: twice the pixels, for high-DPI screens),
    rendered from the frame store on first request and cached in the map version's folder.
    The version is in the URL, so a tile never changes."""
    collection = get_object_or_404(Collection, pk=collection_id)
    current = snapshot(collection, version)
    if current is None:
        raise Http404(f"collection {collection_id} has no map version {version}")
    if not current.grid.has_tile(zoom, column, row):
        raise Http404(f"no tile {zoom}/{column}/{row}: this map has zoom levels 0 to {current.grid.max_zoom}, "
                      f"with 2^zoom tiles a side")
    response = FileResponse(open(current.tile(zoom, column, row, scale), "rb"), content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def _cells_without_copies(collection, current, detection_id):
    """The cells of map `current` without the copies found by detection `detection_id` (any
    detection made from that map: a page drawn from one keeps its tiles after a newer one)."""
    from explorer.served_copies import cells_without_copies, detection_files

    found = detection_files(Duplicates.objects.filter(
        pk=int(detection_id), collection=collection, map_version=current.version).first()) \
        if detection_id.isdigit() and len(detection_id) < 19 else None
    if found is None:
        raise Http404(f"map version {current.version} of collection {collection.pk} has no copies found by "
                      f"detection {detection_id}")
    return cells_without_copies(current, found)


@require_GET
def tile_without_copies(request, collection_id, version, detection_id, zoom, column, row, scale=1):
    """A map tile with the copies of detection `detection_id` left out (the map's "hide
    copies"): each cell shows its nearest frame that copies nothing. Cached like `tile`."""
    collection = get_object_or_404(Collection, pk=collection_id)
    current = snapshot(collection, version)
    if current is None:
        raise Http404(f"collection {collection_id} has no map version {version}")
    cells = _cells_without_copies(collection, current, str(detection_id))
    if not current.grid.has_tile(zoom, column, row):
        raise Http404(f"no tile {zoom}/{column}/{row}: this map has zoom levels 0 to {current.grid.max_zoom}")
    response = FileResponse(open(current.tile(zoom, column, row, scale, cells, f"nocopies-{detection_id}"), "rb"),
                            content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@require_GET
def tag_tile(request, collection_id, version, tagger_id, zoom, column, row, scale=1):
    """The overlay of a tile (PNG, transparent but for the thumbnails' borders; @2x: twice the
    pixels): each thumbnail in the colour of the label its frame is predicted as by tagger
    `tagger_id`; `?only=N` dims the thumbnails of every label but the Nth. The map version
    and the tagger are in the URL, and predictions never change once made, so an overlay
    never changes either."""
    from explorer.predictions import predicted_labels
    from workers.pipeline.tiles import render_tag_overlay

    collection = get_object_or_404(Collection, pk=collection_id)
    tagger = get_object_or_404(Tagger, pk=tagger_id, collection=collection)
    current = snapshot(collection, version)
    if current is None or not current.grid.has_tile(zoom, column, row):
        raise Http404(f"no tile {zoom}/{column}/{row} of map version {version}")
    only = request.GET.get("only")
    if only is not None and not (only.isdigit() and int(only) < len(tagger.classes)):
        raise Http404(f"tagger {tagger.version} has labels 0 to {len(tagger.classes) - 1}, not {only}")
    cells = current.cells
    copies = request.GET.get("copies")  # the detection whose copies the map hides: its cells
    if copies is not None:
        cells = _cells_without_copies(collection, current, copies)
    try:
        predicted, _ = predicted_labels(tagger, current.version)
    except FileNotFoundError:
        raise Http404(f"tagger {tagger.version} has not tagged map version {version}") from None
    overlay = render_tag_overlay(cells, zoom, column, row, predicted, None if only is None else int(only), scale)
    response = HttpResponse(encode_png(overlay), content_type="image/png")
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@require_GET
def source_file(request, source_id):
    """The source's own file, for the browser's <video> or <img>. Range requests get
    206 so the browser can seek; behind nginx, X-Accel-Redirect hands the file over."""
    path = _servable_path(get_object_or_404(Source, pk=source_id))
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    accel = _accel_path(path)
    if accel:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = accel
        return response
    try:
        handle = open_regular(path)  # checked again on the open file: a swap cannot hang the server
    except OSError:  # NotRegularFile included
        raise Http404(f"source {source_id}'s file is no longer a regular file") from None
    size = os.fstat(handle.fileno()).st_size
    wanted = _byte_range(request.headers.get("Range"), size)
    if wanted is None:
        response = FileResponse(handle, content_type=content_type)
    elif wanted == "unsatisfiable":
        handle.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    else:
        start, end = wanted
        response = StreamingHttpResponse(_read(handle, start, end - start + 1), status=206,
                                         content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def _servable_path(source):
    """The real path of a source's file, if it may be served: sampled successfully, and a
    regular file inside the allowed folders (MEDIA_ROOTS, or the folders its ingest named),
    checked now with every link resolved, since the file may have been swapped for a link
    after ingest. Otherwise 404 (saying why only as much as the caller already knows)."""
    if source.status != Source.Status.READY:
        raise Http404(f"source {source.pk} was not sampled successfully: its file is not served")
    folders = list(settings.MEDIA_ROOTS)
    for job in source.jobs.filter(kind=Job.Kind.INGEST).only("params"):
        folders += job.allowed_folders
    try:
        real = allowed_real_path(source.path, folders)
        regular = stat.S_ISREG(real.stat().st_mode)
    except (OutsideAllowedFolders, OSError):
        regular = False
    if not regular:
        raise Http404(f"source {source.pk}'s file is no longer a file inside the allowed folders")
    return real


@require_GET
def poster_file(request, poster_id):
    """A rendered poster, as a download."""
    from explorer.models import Poster

    poster = get_object_or_404(Poster, pk=poster_id)
    if not poster.ready:
        raise Http404(f"poster {poster_id} is not rendered (yet)")
    path = poster.file_path
    content_type = {"png": "image/png", "tiff": "image/tiff", "pdf": "application/pdf"}[poster.params["format"]]
    if settings.DATA_ACCEL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        relative = path.relative_to(settings.DATA_DIR)
        response["X-Accel-Redirect"] = settings.DATA_ACCEL_REDIRECT.rstrip("/") + "/" + str(relative)
    else:
        response = FileResponse(open(path, "rb"), content_type=content_type)
    # Django's helper quotes or percent-encodes the name (RFC 6266): a collection name with
    # quotes, line breaks or non-ASCII letters can neither break the header nor add to it.
    response["Content-Disposition"] = content_disposition_header(True, f"{poster.collection.name}-{path.name}")
    return response


@require_GET
def gif_file(request, gif_id):
    """A clip's GIF, as a download (or shown in place with ?inline=1)."""
    from explorer.models import Gif

    gif = get_object_or_404(Gif.objects.select_related("collection", "source"), pk=gif_id)
    if not gif.ready:
        raise Http404(f"GIF {gif_id} is not made (yet)")
    response = FileResponse(open(gif.file_path, "rb"), content_type="image/gif")
    name = f"{Path(gif.source.path).stem}-{gif.start:g}-{gif.stop:g}s.gif"
    response["Content-Disposition"] = content_disposition_header(request.GET.get("inline") != "1", name)
    return response


@require_GET
def preview(request, collection_id, version, row):
    """The hover preview of the stretch of video around map row `row` (workers/pipeline/
    previews.py): its GIF once made (cached with the map version); until then the request
    asks a worker to make it and gets 202 with Retry-After, so no request waits for the
    decoding; 404 when it cannot be made (the reason given)."""
    from workers.pipeline.previews import claim_preview, preview_name, preview_path, preview_state, \
        preview_window, release_claim
    from workers.stages import PREVIEW_TASK

    collection = get_object_or_404(Collection, pk=collection_id)
    current = snapshot(collection, version)
    if current is None:
        raise Http404(f"collection {collection_id} has no map version {version}")
    if not 0 <= row < len(current):
        raise Http404(f"map version {version} has rows 0 to {len(current) - 1}, not {row}")
    source = int(current.index["source"][row])
    window = preview_window(float(current.index["time"][row]), settings.PREVIEW_SECONDS)[0]
    name = preview_name(source, window)
    state = preview_state(collection.maps_dir, version, name)
    if state == "ready":
        response = FileResponse(open(preview_path(collection.maps_dir, version, name), "rb"), content_type="image/gif")
        response["Cache-Control"] = "public, max-age=31536000, immutable"
        return response
    if state == "failed":
        reason = preview_path(collection.maps_dir, version, name).with_suffix(".failed").read_text().strip()
        raise Http404(f"no preview of this clip: {reason}")
    if state == "missing" and claim_preview(collection.maps_dir, version, name) == "claimed":
        if not send(PREVIEW_TASK, collection.pk, version, source, window):
            release_claim(collection.maps_dir, version, name)  # the broker is away: the next request asks again
    response = JsonResponse({"detail": "the preview is being made: ask again in a moment"}, status=202)
    response["Retry-After"] = "1"
    return response


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header, size):
    """(first, last) byte of a single-range `Range` header (RFC 9110), "unsatisfiable",
    or None to send the whole file (no header, several ranges, or one we do not parse)."""
    match = RANGE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    first = int(first)
    last = min(int(last), size - 1) if last else size - 1
    if first >= size or last < first:
        return "unsatisfiable"
    return first, last


def _read(handle, offset, length, block=1 << 16):
    with handle:
        handle.seek(offset)
        while length > 0:
            data = handle.read(min(block, length))
            if not data:
                return
            length -= len(data)
            yield data


def _accel_path(path):
    """nginx's internal URL for a (real, checked) file under the first MEDIA_ROOTS entry, when
    MEDIA_ACCEL_REDIRECT is set (docker/nginx.conf); None otherwise."""
    from urllib.parse import quote

    if not settings.MEDIA_ACCEL_REDIRECT or not settings.MEDIA_ROOTS:
        return None
    root = Path(os.path.realpath(settings.MEDIA_ROOTS[0]))
    try:
        real = allowed_real_path(path, [root])
    except OutsideAllowedFolders:
        return None  # allowed, but not where nginx's location points: Django sends it
    return settings.MEDIA_ACCEL_REDIRECT.rstrip("/") + "/" + quote(str(real.relative_to(root)))
