"""The JSON API and its OpenAPI schema, against the real worker."""
import json
import os
import subprocess
import sys

import pytest
from django.test import override_settings

from tests.conftest import ROOT, wait_for_job
from tests.media import make_video

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def collection_id(client):
    response = client.post("/api/collections/", {"name": "api"}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["sampling"]["every"] == 20
    return response.json()["id"]


def post_ingest(client, collection_id, paths):
    return client.post(f"/api/collections/{collection_id}/ingest/", {"paths": paths, "embed": False},
                       content_type="application/json")


@pytest.mark.worker
def test_ingest_from_an_allowed_root_and_poll_the_job(client, worker, media_root, collection_id):
    video = make_video(media_root / "api" / "clip.mp4", seconds=2)
    response = post_ingest(client, collection_id, [str(video.parent)])
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    from explorer.models import Job

    wait_for_job(Job.objects.get(pk=job_id))
    job = client.get(f"/api/jobs/{job_id}/").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["finished_at"]
    sources = client.get(f"/api/sources/?collection={collection_id}").json()["results"]
    assert [(s["path"], s["status"], s["frame_count"]) for s in sources] == [(str(video), "ready", 3)]
    listed = client.get("/api/collections/").json()["results"]
    assert listed[0]["source_count"] == 1 and listed[0]["frame_count"] == 3


def test_paths_outside_the_allowed_roots_are_refused(client, media_root, collection_id, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = media_root / "link-out"
    link.symlink_to(outside)
    for path in [str(outside), str(media_root / ".." / ".."), str(link)]:
        response = post_ingest(client, collection_id, [path])
        assert response.status_code == 403, path
        assert "outside the folders this server may ingest from" in response.json()["errors"]["paths"][0]
        assert path in response.json()["errors"]["paths"][0] and path in response.json()["detail"]
    missing = post_ingest(client, collection_id, [str(media_root / "nothing-here")])
    assert missing.status_code == 404 and "no such file or folder" in missing.json()["detail"]
    for malformed in ["relative/path", "/with\x00nul"]:
        assert post_ingest(client, collection_id, [malformed]).json()["errors"].keys() == {"paths.0"}
    from explorer.models import Job

    assert not Job.objects.exists()


def test_no_roots_configured_means_no_web_ingest(client, media_root, collection_id):
    with override_settings(MEDIA_ROOTS=[]):
        response = post_ingest(client, collection_id, [str(media_root)])
    assert response.status_code == 403 and "set MEDIA_ROOTS" in response.json()["errors"]["paths"][0]


def test_bad_requests_get_clear_json_errors(client, collection_id):
    assert post_ingest(client, collection_id, []).status_code == 400
    assert client.get("/api/collections/987654/").status_code == 404
    assert client.get("/api/collections/987654/").json() == {"detail": "No Collection matches the given query."}
    missing = client.get("/api/no-such-endpoint/")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert client.get("/api/sources/?collection=abc").status_code == 400


def test_openapi_schema_is_served_and_complete(client):
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    for path in ["/api/collections/", "/api/collections/{id}/", "/api/collections/{id}/ingest/",
                 "/api/sources/", "/api/sources/{id}/", "/api/jobs/", "/api/jobs/{id}/"]:
        assert path in schema["paths"], path
    ingest = schema["paths"]["/api/collections/{id}/ingest/"]["post"]
    assert "202" in ingest["responses"]
    # drf-spectacular's own validation: no view it could not describe.
    result = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
                             "--format", "openapi-json"], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["paths"].keys() == schema["paths"].keys()


def test_collection_page_lists_collections(client, collection_id):
    page = client.get("/")
    assert page.status_code == 200 and b"collections.js" in page.content


@pytest.mark.worker
def test_frame_images_come_from_the_frame_store(client, worker, media_root):
    import io

    import numpy as np
    from PIL import Image

    from explorer.models import Collection, Job
    from explorer.sampling_settings import sampling_params
    from explorer.jobs import start_ingest
    from workers.pipeline.arrays import open_array

    video = make_video(media_root / "frames-api" / "clip.mp4", seconds=2)
    collection = Collection.objects.create(name="frames", sampling=sampling_params(every=10).as_dict())
    assert wait_for_job(start_ingest(collection, [video], embed=False)).status == Job.Status.SUCCEEDED
    source = collection.sources.get()
    response = client.get(f"/frames/{source.pk}/3.jpg")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    served = np.asarray(Image.open(io.BytesIO(response.content))).astype(int)
    stored = open_array(source.frames_dir, "frames")
    assert np.abs(served - stored[3].astype(int)).mean() < 4  # this frame (JPEG-close)...
    assert np.abs(served - stored[0].astype(int)).mean() > np.abs(served - stored[3].astype(int)).mean()
    assert client.get(f"/frames/{source.pk}/6.jpg").status_code == 404  # ...of six, numbered 0-5
    assert client.get(f"/frames/{source.pk + 1000}/0.jpg").status_code == 404


@pytest.mark.worker
def test_a_symlink_inside_a_root_cannot_lead_a_web_ingest_outside(client, worker, media_root, collection_id, tmp_path):
    from explorer.models import Job

    outside = make_video(tmp_path / "private" / "secret.mp4", seconds=1)
    inside = make_video(media_root / "linked" / "public.mp4", seconds=1, source="smptebars")
    (media_root / "linked" / "innocent.mp4").symlink_to(outside)
    response = post_ingest(client, collection_id, [str(inside.parent)])
    assert response.status_code == 202
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]))
    paths = [s["path"] for s in client.get(f"/api/sources/?collection={collection_id}").json()["results"]]
    assert paths == [str(inside)]
    assert {"path": str(media_root / "linked" / "innocent.mp4"),
            "reason": "a link that leads outside the folders ingested from", "kind": "unusable"} in job.skipped


def test_training_asks_for_json_and_for_frames(client, collection_id):
    url = f"/api/collections/{collection_id}/train/"
    assert client.post(url, "x", content_type="text/plain").status_code == 415  # not from a cross-site form
    refused = client.post(url, {}, content_type="application/json")
    assert refused.status_code == 409 and "no sampled frames to train on" in refused.json()["detail"]


def test_every_list_is_paginated_and_its_parameters_are_checked(client, collection_id):
    for name in ("second", "third"):
        assert client.post("/api/collections/", {"name": name}, content_type="application/json").status_code == 201
    lists = ["/api/collections/", "/api/sources/", "/api/jobs/", "/api/posters/"]
    for url in lists:
        page = client.get(url).json()
        assert set(page) == {"count", "next", "previous", "results"}, url
    first = client.get("/api/collections/?limit=2").json()
    assert first["count"] == 3 and [c["name"] for c in first["results"]] == ["api", "second"]
    rest = client.get(first["next"]).json()
    assert [c["name"] for c in rest["results"]] == ["third"] and rest["next"] is None
    for url in lists:
        for bad in ("limit=0", "limit=1001", "limit=abc", "limit=", "offset=-1", "offset=1.5", "limit=5&limit=6",
                    "offset=1&offset=2"):
            response = client.get(f"{url}?{bad}")
            assert response.status_code == 400, (url, bad)
            assert bad.split("=")[0] in response.json()["errors"], (url, bad, response.json())
    for url in lists[1:]:
        assert client.get(f"{url}?collection={collection_id}&collection={collection_id}").status_code == 400
        assert client.get(f"{url}?collection=0").status_code == 400
    assert client.get("/api/jobs/?active=yes").status_code == 400
    assert client.get("/api/jobs/?active=true").status_code == 200


def test_every_parameter_has_its_type_and_limits_in_the_schema(client):
    from workers.pipeline.posters import EMPTY_CELLS, FORMATS, LIMITS, QUALITIES

    schema = client.get("/api/openapi.json").json()
    components = schema["components"]["schemas"]

    def resolved(prop):
        if "allOf" in prop:
            return {**components[prop["allOf"][0]["$ref"].rsplit("/", 1)[1]], **prop}
        return prop

    poster = components["PosterRequest"]["properties"]
    for name, (low, high) in LIMITS.items():
        assert (poster[name]["minimum"], poster[name]["maximum"]) == (low, high), name
        assert poster[name]["type"] == ("integer" if isinstance(low, int) else "number"), name
    for name, choices in (("format", FORMATS), ("quality", QUALITIES), ("empty", EMPTY_CELLS)):
        assert resolved(poster[name])["enum"] == list(choices), name
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                assert parameter["schema"].get("type") in ("integer", "number", "boolean", "string"), (path, parameter)
                if parameter["schema"]["type"] in ("integer", "number") and parameter["in"] == "query":
                    assert "minimum" in parameter["schema"] and "maximum" in parameter["schema"], (path, parameter)
            if method == "get" and "results" in str(operation["responses"]["200"]):
                names = {parameter["name"] for parameter in operation["parameters"]}
                assert {"limit", "offset"} <= names, path
    jobs = {p["name"]: p["schema"] for p in schema["paths"]["/api/jobs/"]["get"]["parameters"]}
    assert jobs["active"]["type"] == "boolean" and jobs["collection"]["type"] == "integer"


def test_every_error_has_one_shape_and_the_schema_says_so(client, collection_id):
    def error(response, status):
        assert response.status_code == status, response.content
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"] and set(body) <= {"detail", "errors"}
        return body

    post = lambda url, data, **kwargs: client.post(url, data, content_type="application/json", **kwargs)
    assert error(client.get("/api/collections/987654/"), 404) == {"detail": "No Collection matches the given query."}
    assert "no API endpoint at /api/nothing/" in error(client.get("/api/nothing/"), 404)["detail"]
    assert error(client.get("/api/collections/987654/map/"), 404)["detail"]
    refused = error(client.delete(f"/api/collections/{collection_id}/"), 405)
    allowed = client.delete(f"/api/collections/{collection_id}/")["Allow"]
    assert "DELETE" in refused["detail"] and "GET" in allowed and "DELETE" not in allowed
    assert "JSON" in error(client.post(f"/api/collections/{collection_id}/train/", "x", content_type="text/plain"),
                           415)["detail"]
    assert error(client.post("/api/collections/", "{not json", content_type="application/json"), 400)["detail"]
    taken = error(post("/api/collections/", {"name": "api"}), 409)
    assert taken["detail"] == "a collection named 'api' already exists"
    for name in ["", " api", "api ", "line\nbreak", "x" * 201, 7]:
        assert "name" in error(post("/api/collections/", {"name": name}), 400)["errors"], name
    unknown = error(post("/api/collections/", {"name": "fine", "colour": "red"}), 400)
    assert unknown["errors"] == {"colour": ["not a field of this request"]}
    typed = error(post("/api/posters/plan/", {"collection": "1", "centre_x": 0, "centre_y": "0", "window_width": 1,
                                              "columns": 2.5, "rows": True, "format": "gif"}), 400)
    assert set(typed["errors"]) == {"collection", "centre_y", "columns", "rows", "format"}
    assert all(name in typed["detail"] for name in typed["errors"])
    nested = error(post(f"/api/collections/{collection_id}/ingest/", {"paths": ["/ok", 5]}), 400)
    assert list(nested["errors"]) == ["paths.1"]
    assert error(post(f"/api/collections/{collection_id}/train/", {"now": True}), 400)["errors"] == {
        "now": ["not a field of this request"]}

    schema = client.get("/api/openapi.json").json()
    error_component = {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = {code for code in operation["responses"] if code >= "400"}
            assert {"400", "404", "405"} <= codes and ("415" in codes) == (method == "post"), (path, method)
            for code in codes:
                assert operation["responses"][code]["content"]["application/json"]["schema"] == error_component
            if method == "post":
                assert operation["requestBody"]["required"], path


def test_the_command_line_names_collections_as_the_api_does():
    from django.core.management.base import CommandError

    from explorer.cli import collection_for

    for name in [" spaced", "tab\there", "x" * 201]:
        with pytest.raises(CommandError, match="cannot name a collection"):
            collection_for(name, ["/anywhere"], None, None)
    assert collection_for("Ünïcødé <b>name</b>", ["/anywhere"], None, None).name == "Ünïcødé <b>name</b>"


def test_only_sampled_files_inside_the_allowed_folders_are_served(client, worker, media_root, collection_id,
                                                                   tmp_path):
    from explorer.models import Collection, Job, Source

    folder = media_root / "served"
    video = make_video(folder / "clip.mp4", seconds=1)
    (folder / "settings.mp4").write_text("SECRET_KEY=not-for-anyone\n")  # named as a video; is not one
    private = tmp_path / "private.mp4"
    private.write_bytes(video.read_bytes())
    job = wait_for_job(Job.objects.get(pk=post_ingest(client, collection_id, [str(folder)]).json()["id"]))
    sources = {os.path.basename(s.path): s for s in Source.objects.filter(collection_id=collection_id)}
    assert sources["settings.mp4"].status == "failed", job.skipped
    assert client.get(f"/sources/{sources['settings.mp4'].pk}/file").status_code == 404  # failed: never served

    url = f"/sources/{sources['clip.mp4'].pk}/file"
    served = client.get(url)
    assert served.status_code == 200 and b"".join(served.streaming_content) == video.read_bytes()
    video.unlink()
    video.symlink_to(private)  # swapped for a link that leads out, after ingest
    assert client.get(url).status_code == 404
    assert client.get(url, HTTP_RANGE="bytes=0-9").status_code == 404
    video.unlink()
    os.mkfifo(video)  # or for something that is not a regular file
    assert client.get(url).status_code == 404

    # From the command line, the allowed folders are the ones named: a link in them that
    # leads out is neither sampled nor served.
    cli_folder = tmp_path / "cli"
    make_video(cli_folder / "mine.mp4", seconds=1, source="smptebars")
    (cli_folder / "passwd.mp4").symlink_to("/etc/passwd")
    from explorer.jobs import start_ingest

    cli_job = wait_for_job(start_ingest(Collection.objects.get(pk=collection_id), [str(cli_folder)], embed=False))
    assert {"path": str(cli_folder / "passwd.mp4"),
            "reason": "a link that leads outside the folders ingested from", "kind": "unusable"} in cli_job.skipped
    mine = Source.objects.get(collection_id=collection_id, path=str(cli_folder / "mine.mp4"))
    assert client.get(f"/sources/{mine.pk}/file").status_code == 200
