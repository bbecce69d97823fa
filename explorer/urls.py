from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.routers import DefaultRouter

from explorer import api, media, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("collections", api.CollectionViewSet, basename="collection")
router.register("sources", api.SourceViewSet, basename="source")
router.register("jobs", api.JobViewSet, basename="job")

urlpatterns = [
    path("", views.collection_list, name="collections"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection"),
    path("frames/<int:source_id>/<int:number>.jpg", media.frame_image, name="frame-image"),
    path("api/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("api/", include(router.urls)),
]


def handler404(request, exception=None):
    """JSON for the API, Django's page for the rest."""
    if request.path.startswith("/api/"):
        from django.http import JsonResponse

        return JsonResponse({"detail": f"no API endpoint at {request.path}"}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)
