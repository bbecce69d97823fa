"""HTML pages. Data comes from the JSON API; pages poll it for live progress."""
from django.shortcuts import render


def collection_list(request):
    return render(request, "explorer/collections.html")
