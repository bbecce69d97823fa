"""Copies end to end: the real worker ingests generated media with known copies (a re-encoded
twin, a 10%-cropped twin, a clip cut at a known offset at another size and frame rate, a loop,
a one-frame clip, a still, photos re-encoded, halved and cropped, an exact copy) beside
look-alikes that are no copies; the duplicates stage groups them; the API, the command and
the job show them; bad input (one file, no map) gets a clear answer."""
import json
import shutil
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from explorer.jobs import start_ingest
from explorer.models import Collection, Job
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import ffmpeg, make_panning_video, shapes_picture

CUT_AT = 5.3  # where the clip is cut from the original, in seconds


def make_media(folder):
    import cv2

    original = make_panning_video(folder / "original.mp4", seed=1, seconds=12)
    ffmpeg("-i", original, "-vf", "scale=256:144", "-crf", "34", folder / "twin.mp4")
    ffmpeg("-i", original, "-vf", "crop=iw*0.9:ih*0.9:iw*0.1:0", folder / "cropped.mp4")
    ffmpeg("-ss", CUT_AT, "-i", original, "-t", 4, "-vf", "scale=640:360,fps=25", folder / "cut.mp4")
    ffmpeg("-i", original, "-t", 0.1, folder / "blink.mp4")  # one sampled frame
    ffmpeg("-ss", 9, "-i", original, "-t", 2, folder / "part.mp4")
    ffmpeg("-stream_loop", 1, "-i", folder / "part.mp4", "-c", "copy", folder / "looped.mp4")  # the part, twice
    # look-alikes: the same kind of scene, and two stills of others (which must not match each other)
    make_panning_video(folder / "lookalike.mp4", seed=2, seconds=12)
    make_panning_video(folder / "still.mp4", seed=3, seconds=3, still=True)
    make_panning_video(folder / "still-other.mp4", seed=4, seconds=3, still=True)
    cv2.imwrite(str(folder / "photo.jpg"), shapes_picture(5, 360, 640)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(folder / "photo-lookalike.jpg"), shapes_picture(6, 360, 640)[:, :, ::-1])
    ffmpeg("-i", folder / "photo.jpg", "-q:v", 25, folder / "photo-reencoded.jpg")
    ffmpeg("-i", folder / "photo.jpg", "-vf", "scale=iw/2:ih/2", folder / "photo-half.jpg")
    ffmpeg("-i", folder / "photo.jpg", "-vf", "crop=iw*0.9:ih*0.9:iw*0.05:ih*0.1", folder / "photo-cropped.jpg")
    shutil.copyfile(folder / "photo.jpg", folder / "photo-exact.jpg")


@pytest.fixture(scope="module")
def found(worker, media_root, django_db_blocker):
    """The collection ingested once for the module, its report and its sources by file name."""
    from explorer.copies_api import report

    folder = media_root / "duplicates"
    make_media(folder)
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="duplicates", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=600)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        collection.refresh_from_db()
        sources = {s.path.rsplit("/", 1)[1]: s.pk for s in collection.sources.all()}
        yield collection, report(collection), sources, job
        collection.delete()


def relations(found_report, names):
    return {(names[r["copy"]], names[r["original"]]): r for g in found_report["groups"] for r in g["relations"]}


def test_every_kind_of_copy_is_found_and_no_look_alike(found):
    collection, found_report, sources, _ = found
    names = {pk: name for name, pk in sources.items()}
    pairs = relations(found_report, names)
    photo = "photo.jpg" if "photo.jpg" in sources else "photo-exact.jpg"  # the other is an exact copy, passed over
    expected = {("twin.mp4", "original.mp4"): "copy", ("cropped.mp4", "original.mp4"): "copy",
                ("cut.mp4", "original.mp4"): "contained", ("blink.mp4", "original.mp4"): "contained",
                ("part.mp4", "looped.mp4"): "contained", ("photo-reencoded.jpg", photo): "near-duplicate",
                ("photo-half.jpg", photo): "near-duplicate", ("photo-cropped.jpg", photo): "near-duplicate"}
    for pair, kind in expected.items():
        assert pair in pairs, f"{pair} not found: {sorted(pairs)}"
        assert pairs[pair]["kind"] == kind, pairs[pair]
    involved = {name for pair in pairs for name in pair}
    assert not involved & {"lookalike.mp4", "still.mp4", "still-other.mp4", "photo-lookalike.jpg"}, sorted(pairs)


def test_a_cut_clip_is_placed_within_half_a_second_of_its_offset(found):
    _, found_report, sources, _ = found
    names = {pk: name for name, pk in sources.items()}
    cut = relations(found_report, names)[("cut.mp4", "original.mp4")]
    offset = cut["original_start"] - cut["copy_start"]
    assert abs(offset - CUT_AT) <= 0.5, cut
    assert cut["copy_frame"]["source"] == sources["cut.mp4"] and cut["original_frame"]["source"] == sources["original.mp4"]


def test_groups_keep_the_original_and_the_map_knows_which_frames_are_copies(found):
    collection, found_report, sources, _ = found
    from explorer.copies_api import current_duplicates

    group = next(g for g in found_report["groups"] if sources["twin.mp4"] in [m["source"] for m in g["members"]])
    assert group["representative"] == sources["original.mp4"]  # longer and larger than the copies
    assert group["members"][0]["source"] == sources["original.mp4"]
    detection, files, current = current_duplicates(collection)
    copy_of = files.copy_of
    index_sources = current.index["source"]
    twin_rows = (index_sources == sources["twin.mp4"]).nonzero()[0]
    assert (copy_of[twin_rows] >= 0).mean() > 0.8  # nearly every frame of the twin is a copy...
    assert set(index_sources[copy_of[twin_rows][copy_of[twin_rows] >= 0]]) <= {sources["original.mp4"],
                                                                              sources["cropped.mp4"]}
    original_rows = (index_sources == sources["original.mp4"]).nonzero()[0]
    assert (copy_of[original_rows] == -1).all()  # ...and the original's frames copy nothing
    assert detection.copied_frames == int((copy_of >= 0).sum())


def test_the_map_says_what_a_frame_copies_marks_copied_clips_and_hides_copies(found, client, viewer_client):
    collection, _, sources, _ = found
    api = f"/api/collections/{collection.pk}/map/"
    state = viewer_client.get(api).json()
    assert state["copies"] and "/nocopies/" in state["copies"]["tile_url"]
    with CaptureQueriesContext(connection) as copied_queries:
        twin = viewer_client.get(f"{api}frame/?source={sources['twin.mp4']}&frame=180").json()
    assert twin["copy_of"]["kind"] == "copy"
    assert twin["copy_of"]["frame"]["source"] in (sources["original.mp4"], sources["cropped.mp4"])
    assert abs(twin["copy_of"]["frame"]["time"] - twin["time"]) < 0.5
    with CaptureQueriesContext(connection) as plain_queries:
        original = viewer_client.get(f"{api}frame/?source={sources['original.mp4']}&frame=180").json()
    assert original["copy_of"] is None
    assert len(copied_queries) == len(plain_queries)  # a hover over a copy costs no extra query
    similar = viewer_client.get(f"{api}similar/?source={sources['original.mp4']}&frame=180&top=50").json()["clips"]
    marks = {clip["source"]: clip["copy"] for clip in similar}
    assert marks.get(sources["twin.mp4"]) is True and marks.get(sources["lookalike.mp4"], False) is False
    # hidden: the tiles and what a point hits leave every copied frame out
    tile = state["copies"]["tile_url"].replace("{z}/{x}/{y}{r}", "0/0/0")
    response = viewer_client.get(tile)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert viewer_client.get(tile.replace(f"/nocopies/{state['copies']['detection']}/",
                                          "/nocopies/999999/")).status_code == 404
    zoom = state["max_zoom"]
    hit = viewer_client.get(f"{api}point/?x={twin['x']}&y={twin['y']}&zoom={zoom}&hide_copies=true")
    assert hit.status_code == 404 or hit.json()["copy_of"] is None
    shown = viewer_client.get(f"{api}point/?x={twin['x']}&y={twin['y']}&zoom={zoom}")
    assert shown.status_code == 200


def test_a_label_given_with_copies_goes_to_every_copy_of_the_frames(found, client, django_db_blocker):
    from explorer.models import FrameLabel

    collection, _, sources, _ = found
    url = f"/api/collections/{collection.pk}/labels/"
    with django_db_blocker.unblock():
        response = client.post(url, {"label": "ball", "frames": [[sources["original.mp4"], 90]], "with_copies": True},
                               content_type="application/json")
        assert response.status_code == 200, response.content
        labelled = set(FrameLabel.objects.filter(collection=collection).values_list("source_id", "frame"))
        assert (sources["original.mp4"], 90) in labelled and (sources["twin.mp4"], 90) in labelled
        assert "copies" in response.json()["description"]
        assert not any(source == sources["lookalike.mp4"] for source, _ in labelled)
        client.post(f"{url}undo/", {}, content_type="application/json")
        assert not FrameLabel.objects.filter(collection=collection).exists()


def test_exact_copies_met_at_scan_are_in_the_report(found):
    _, found_report, sources, job = found
    exact = {e["source"]: e for e in found_report["exact"]}
    kept = "photo.jpg" if "photo.jpg" in sources else "photo-exact.jpg"
    other = "photo-exact.jpg" if kept == "photo.jpg" else "photo.jpg"
    assert [path.rsplit("/", 1)[1] for path in exact[sources[kept]]["copies"]] == [other]
    assert "group(s) of copies" in job.message


def test_the_api_shows_the_report_to_viewers_and_lets_editors_look_again(found, client, viewer_client):
    collection, found_report, _, _ = found
    url = f"/api/collections/{collection.pk}/duplicates/"
    shown = viewer_client.get(url)
    assert shown.status_code == 200
    assert [g["id"] for g in shown.json()["groups"]] == [g["id"] for g in found_report["groups"]]
    # paged: one group a page, every group once, and past the last page a 404
    count = len(found_report["groups"])
    assert count >= 2 and shown.json()["group_count"] == count
    paged = [viewer_client.get(url, {"page": page, "page_size": 1}).json() for page in range(1, count + 1)]
    assert [g["id"] for page in paged for g in page["groups"]] == [g["id"] for g in found_report["groups"]]
    assert [e["source"] for page in paged for e in page["exact"]] == [e["source"] for e in found_report["exact"]]
    assert {page["pages"] for page in paged} == {count}
    assert viewer_client.get(url, {"page": count + 1, "page_size": 1}).status_code == 404
    assert viewer_client.get(url, {"page_size": 1000}).status_code == 400
    assert viewer_client.post(url, {"threshold": 0.9}, content_type="application/json").status_code == 403
    assert client.post(url, {"threshold": 1.5}, content_type="application/json").status_code == 400
    assert client.post(url, {"threshold": 0.5, "other": 1}, content_type="application/json").status_code == 400
    response = client.post(url, {"threshold": 0.9999}, content_type="application/json")
    assert response.status_code == 202, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]), timeout=300)
    assert job.status == Job.Status.SUCCEEDED, job.error
    stricter = client.get(url).json()
    assert stricter["threshold"] == 0.9999 and len(stricter["groups"]) < len(found_report["groups"])
    response = client.post(url, {"threshold": found_report["threshold"]}, content_type="application/json")
    assert wait_for_job(Job.objects.get(pk=response.json()["id"]), timeout=300).status == Job.Status.SUCCEEDED
    kept = list(collection.duplicate_detections.all())  # the current one and the one it replaced; older ones gone
    assert len(kept) == 2 and all(d.directory.exists() for d in kept)
    assert not (kept[0].directory.parent / str(found_report["detection"])).exists()


def test_the_command_prints_a_line_per_group_and_writes_json(found, tmp_path):
    collection, found_report, _, _ = found
    out = tmp_path / "copies.json"
    result = subprocess.run([sys.executable, "manage.py", "duplicates", collection.name, "--json", str(out)],
                            cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [line for line in lines if line.startswith("#")]
    assert len(headers) == len(found_report["groups"])
    assert any("contained" in line and "cut.mp4 of original.mp4" in line and "0:0" in line for line in lines)
    written = json.loads(out.read_text())
    assert [g["members"] for g in written["groups"]] == [g["members"] for g in found_report["groups"]]


def test_one_file_makes_no_group(worker, media_root, django_db_blocker):
    from explorer.copies_api import report

    folder = media_root / "duplicates-one"
    make_panning_video(folder / "alone.mp4", seed=7, seconds=2)
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="duplicates-one", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, job.error
        collection.refresh_from_db()
        assert report(collection)["groups"] == [] and "no copies" in job.message
        collection.delete()


@pytest.mark.django_db
def test_no_map_no_copies_and_a_clear_answer(client):
    empty = Collection.objects.create(name="duplicates-none", sampling=sampling_params(every=10).as_dict())
    response = client.get(f"/api/collections/{empty.pk}/duplicates/")
    assert response.status_code == 409 and "not looked through for copies" in response.json()["detail"]
    response = client.post(f"/api/collections/{empty.pk}/duplicates/", {"threshold": 0.5},
                           content_type="application/json")
    assert response.status_code == 409 and "no map" in response.json()["detail"]
