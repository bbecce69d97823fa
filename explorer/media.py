"""Images served from the frame store. Only ids reach the disk: a path is always
built from the source's own folder, so no parameter can point elsewhere."""
import io

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from explorer.models import Source
from workers.pipeline.arrays import open_array


@require_GET
def frame_image(request, source_id, number):
    """Frame `number` of a source as JPEG, at frame-store resolution."""
    from PIL import Image

    source = get_object_or_404(Source, pk=source_id, status=Source.Status.READY)
    try:
        frames = open_array(source.frames_dir, "frames")
    except FileNotFoundError:
        raise Http404(f"source {source_id} has no frames on disk") from None
    if not 0 <= number < frames.shape[0]:
        raise Http404(f"source {source_id} has frames 0 to {frames.shape[0] - 1}, not {number}")
    buffer = io.BytesIO()
    Image.fromarray(frames[number]).save(buffer, format="JPEG", quality=85)
    response = HttpResponse(buffer.getvalue(), content_type="image/jpeg")
    response["Cache-Control"] = "public, max-age=86400"  # a source's frames never change in place
    return response
