"""HTML pages. Data comes from the JSON API; pages poll it for live progress."""
from django.shortcuts import get_object_or_404, render

from explorer.models import Collection


def collection_list(request):
    return render(request, "explorer/collections.html")


def collection_detail(request, collection_id):
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/collection.html", {"collection": collection})


def collection_map(request, collection_id):
    """The pan/zoom map of a collection; while it has none yet, the progress of its jobs."""
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/map.html", {"collection": collection})
