"""HTML pages. Data comes from the JSON API; pages poll it for live progress."""
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from explorer import access
from explorer.models import Collection


def access_context(request):
    """For every page: who is signed in, their role, and whether this is the login-free local server."""
    return {"login_free": access.login_free(), "role": getattr(request, "role", None)}


# Pages set the CSRF cookie: their scripts send it back (X-CSRFToken) with every POST.
@ensure_csrf_cookie
def collection_list(request):
    return render(request, "explorer/collections.html")


@ensure_csrf_cookie
def collection_detail(request, collection_id):
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/collection.html", {"collection": collection})


@ensure_csrf_cookie
def collection_map(request, collection_id):
    """The pan/zoom map of a collection; while it has none yet, the progress of its jobs."""
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/map.html", {"collection": collection})


@ensure_csrf_cookie
def cluster_gallery(request, collection_id, cluster):
    """A cluster's members as a grid of thumbnails, to name, select, relabel, merge and split."""
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/cluster.html", {"collection": collection, "cluster": cluster})


@ensure_csrf_cookie
def review(request, collection_id):
    """The frames the tagger is least sure of, or that it tags otherwise than people did:
    to confirm its prediction or give another label."""
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/review.html", {"collection": collection})


@ensure_csrf_cookie
def duplicates_report(request, collection_id):
    """The collection's copies: groups side by side with their aligned time ranges, and the
    exact copies passed over at ingest; editors look again with another threshold."""
    collection = get_object_or_404(Collection, pk=collection_id)
    return render(request, "explorer/duplicates.html", {"collection": collection})
