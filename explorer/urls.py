from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.routers import DefaultRouter

from explorer import (
    api, cluster_api, colour_api, copies_api, file_views, label_api, map_api, poster_api, predict_api, prediction_api,
    tagger_api, views,
)
from workers.pipeline.tiles import LAYOUT_REVISION

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("collections", api.CollectionViewSet, basename="collection")
router.register("sources", api.SourceViewSet, basename="source")
router.register("jobs", api.JobViewSet, basename="job")
router.register("posters", poster_api.PosterViewSet, basename="poster")
router.register("gifs", colour_api.GifViewSet, basename="gif")

TILES = f"collections/<int:collection_id>/tiles/<str:version>/{LAYOUT_REVISION}"
TAGS = f"collections/<int:collection_id>/tags/<str:version>/<int:tagger_id>/{LAYOUT_REVISION}"
NO_COPIES = f"collections/<int:collection_id>/tiles/<str:version>/{LAYOUT_REVISION}/nocopies/<int:detection_id>"

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.collection_list, name="collections"),
    path("collections/<int:collection_id>/", views.collection_detail, name="collection"),
    path("collections/<int:collection_id>/map/", views.collection_map, name="map"),
    path("collections/<int:collection_id>/clusters/<int:cluster>/", views.cluster_gallery, name="cluster"),
    path("collections/<int:collection_id>/review/", views.review, name="review"),
    path("collections/<int:collection_id>/duplicates/", views.duplicates_report, name="duplicates"),
    path("frames/<int:source_id>/<int:number>.jpg", file_views.frame_image, name="frame-image"),
    # The version is checked against the map folders' names (explorer/served_maps.py); the
    # placement rule's revision follows it, as browsers keep a tile for good. A tile's URL ends
    # in @2x for high-DPI screens (Leaflet's {r}): twice the pixels.
    path(f"{TILES}/<int:zoom>/<int:column>/<int:row>.jpg", file_views.tile, name="tile"),
    path(f"{TILES}/<int:zoom>/<int:column>/<int:row>@2x.jpg", file_views.tile, {"scale": 2}, name="tile-2x"),
    path(f"{NO_COPIES}/<int:zoom>/<int:column>/<int:row>.jpg", file_views.tile_without_copies, name="tile-no-copies"),
    path(f"{NO_COPIES}/<int:zoom>/<int:column>/<int:row>@2x.jpg", file_views.tile_without_copies, {"scale": 2},
         name="tile-no-copies-2x"),
    path(f"{TAGS}/<int:zoom>/<int:column>/<int:row>.png", file_views.tag_tile, name="tag-tile"),
    path(f"{TAGS}/<int:zoom>/<int:column>/<int:row>@2x.png", file_views.tag_tile, {"scale": 2}, name="tag-tile-2x"),
    path("sources/<int:source_id>/file", file_views.source_file, name="source-file"),
    path("posters/<int:poster_id>/file", file_views.poster_file, name="poster-file"),
    path("gifs/<int:gif_id>/file", file_views.gif_file, name="gif-file"),
    path("collections/<int:collection_id>/previews/<str:version>/<int:row>.gif", file_views.preview, name="preview"),
    path("api/collections/<int:pk>/map/", map_api.map_state, name="api-map"),
    path("api/collections/<int:pk>/map/point/", map_api.map_point, name="api-map-point"),
    path("api/collections/<int:pk>/map/frame/", map_api.map_frame, name="api-map-frame"),
    path("api/collections/<int:pk>/map/path/", map_api.map_path, name="api-map-path"),
    path("api/collections/<int:pk>/map/similar/", map_api.map_similar, name="api-map-similar"),
    path("api/collections/<int:pk>/map/dissimilar/", map_api.map_dissimilar, name="api-map-dissimilar"),
    path("api/collections/<int:pk>/clusters/", cluster_api.clusters, name="api-clusters"),
    path("api/collections/<int:pk>/clusters/merge/", cluster_api.merge_clusters, name="api-clusters-merge"),
    path("api/collections/<int:pk>/clusters/<int:cluster>/", cluster_api.cluster_members, name="api-cluster"),
    path("api/collections/<int:pk>/clusters/<int:cluster>/split/", cluster_api.split_cluster, name="api-cluster-split"),
    path("api/collections/<int:pk>/duplicates/", copies_api.duplicates, name="api-duplicates"),
    path("api/collections/<int:pk>/labels/", label_api.labels, name="api-labels"),
    path("api/collections/<int:pk>/labels/undo/", label_api.undo, name="api-labels-undo"),
    path("api/collections/<int:pk>/labels/export/", label_api.export_labels, name="api-labels-export"),
    path("api/collections/<int:pk>/labels/import/", label_api.import_labels, name="api-labels-import"),
    path("api/collections/<int:pk>/tagger/", tagger_api.tagger, name="api-tagger"),
    path("api/collections/<int:pk>/predict/", predict_api.predict, name="api-predict"),
    path("api/collections/<int:pk>/cutouts/", colour_api.cutouts, name="api-cutouts"),
    path("api/collections/<int:pk>/predictions/", prediction_api.predictions, name="api-predictions"),
    path("api/collections/<int:pk>/predictions/videos/", prediction_api.video_predictions,
         name="api-predictions-videos"),
    path("api/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("api/", include(router.urls)),
]


def handler404(request, exception=None):
    """JSON in the API's error shape under /api/, the product's own page (templates/404.html)
    elsewhere."""
    if request.path.startswith("/api/"):
        from explorer.api_errors import json_error

        return json_error(404, f"no API endpoint at {request.path}")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    """JSON under /api/; elsewhere templates/500.html, rendered without the request, so no
    context processor (nor the database) can fail it again."""
    if request.path.startswith("/api/"):
        from explorer.api_errors import json_error

        return json_error(500, "the server failed to answer this request; the error is in its log")
    from django.views.defaults import server_error

    return server_error(request)
