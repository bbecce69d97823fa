"""The tagger's predictions, shown: the overlay of predicted labels on a fixed grid and the
review order on fixed arrays; then, on generated media of three kinds (two videos each,
three labelled frames a video, a softmax tagger trained by the real worker, and two frames
labelled afterwards against the tagger), the predictions API (a label's frames, the review
order, disagreements, pages, videos, the overlay tiles, who may read them), and in a real
browser the review page (least sure first; confirming predictions labels those frames),
the collection page's confusion matrix and the map's tag colouring."""
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from explorer.jobs import start_ingest
from explorer.models import Collection, FrameLabel, Job, Label, Tagger
from explorer.predictions import UNKNOWN_LABEL, FramePredictions
from explorer.sampling_settings import sampling_params
from tests.conftest import SCREENSHOTS, token_client, wait_for_job
from tests.media import make_video
from tests.test_map_serving import get_json, wait_for
from tests.test_tagger import VIDEOS, kind_of, label, label_first_frames, sampled_frames, train_tagger
from workers.pipeline.images import encode_png
from workers.pipeline.tiles import DIMMED, TAG_COLOURS, CellIndex, TileGrid, render_tag_overlay

SHOTS = "/tmp/ui-shots"
UNKNOWN_NAME = "logo <b>new</b>"  # given after the training: the tagger does not know it (and HTML stays text)
NOTHING_RAN = "window.xss === undefined && document.querySelectorAll('main b').length === 0"


# --- pure: the overlay and the review order ---

def rgba(colour):
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)] + [255]


def test_the_overlay_outlines_each_thumbnail_in_its_labels_colour_and_dims_the_others():
    grid = TileGrid(2)
    # Zoom 0: one tile of 4x4 cells of 64x36 pixels. A frame at the centre of cells (0, 0),
    # (column 2, row 1) and (3, 3): each alone in its quarter of the tile, so each thumbnail
    # grows to that 2x2 block of 128x72 pixels (tiles.py); the bottom-left quarter stays empty.
    xy = grid.cell_centres(np.array([0, 2, 3]), np.array([0, 1, 3]), 0)
    cells = CellIndex.build(grid, xy)
    predicted = np.array([0, 1, 21])  # label 21 takes the palette's second colour again
    overlay = render_tag_overlay(cells, 0, 0, 0, predicted)
    assert overlay.shape == (144, 256, 4) and overlay.dtype == np.uint8
    border, chip = 6, 25  # of a 128-pixel-wide thumbnail: 128 // 20 and 128 // 5
    first, second = rgba(TAG_COLOURS[0]), rgba(TAG_COLOURS[1])
    assert overlay[0, 0].tolist() == first and overlay[71, 127].tolist() == first  # the border's corners
    assert overlay[chip - 1, chip - 1].tolist() == first  # the chip
    assert overlay[36, 64, 3] == 0 and overlay[chip, border - 1, 3] == 255 and overlay[chip, border, 3] == 0
    assert overlay[36, 128].tolist() == second and overlay[36, 128 + 64, 3] == 0
    assert overlay[72 + 36, 255].tolist() == second  # label 21
    assert overlay[72:144, 0:128].max() == 0  # nothing there: transparent
    # One label alone: its thumbnails as before, the others' dimmed, the empty cells still clear.
    only = render_tag_overlay(cells, 0, 0, 0, predicted, only=1)
    assert only[36, 128].tolist() == second
    assert (only[0:72, 0:128] == DIMMED).all() and only[72:144, 0:128].max() == 0
    # Deeper: at zoom 3 (grid level 2, 2x2 cells of 128x72 a tile) the first frame, at the corner
    # of four cells of level 2, is in cell (2, 2), the top-left cell of tile (1, 1); alone in
    # that tile, it fills it: a border of 12 pixels and a chip of 51.
    zoomed = render_tag_overlay(cells, 3, 1, 1, predicted)
    assert zoomed[0, 0].tolist() == first and zoomed[143, 255].tolist() == first and zoomed[72, 128, 3] == 0
    assert zoomed[50, 50].tolist() == first and zoomed[60, 11].tolist() == first and zoomed[60, 12, 3] == 0
    # For high-DPI screens, the same overlay at twice the pixels.
    np.testing.assert_array_equal(render_tag_overlay(cells, 0, 0, 0, predicted, scale=2),
                                  overlay.repeat(2, axis=0).repeat(2, axis=1))
    # As a PNG it keeps its transparency.
    decoded = cv2.imdecode(np.frombuffer(encode_png(overlay), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded[..., [2, 1, 0, 3]], overlay)


def test_review_lists_the_unsure_and_the_disagreeing_least_sure_first():
    tagger = SimpleNamespace(classes=["a", "b", "c"])
    probabilities = np.array([
        [0.90, 0.05, 0.05],  # 0: sure, unlabelled
        [0.50, 0.30, 0.20],  # 1: unsure, unlabelled
        [0.40, 0.35, 0.25],  # 2: less sure, unlabelled
        [0.55, 0.40, 0.05],  # 3: labelled b, predicted a: disagrees (confidence 0.40)
        [0.20, 0.70, 0.10],  # 4: labelled a, predicted b: disagrees (0.20)
        [0.45, 0.30, 0.25],  # 5: labelled a, predicted a, unsure: settled by a person
        [0.10, 0.10, 0.80],  # 6: labelled with a label the tagger does not know (0)
    ], np.float32)
    label_rows = np.array([0, 0, 0, 12, 11, 11, 13])  # label ids: 11 "a", 12 "b", 13 "new"
    frames = FramePredictions(tagger, probabilities, probabilities.argmax(axis=1), probabilities.max(axis=1),
                              label_rows, {11: "a", 12: "b", 13: "new"})
    assert frames.given.tolist() == [-1, -1, -1, 1, 0, 0, UNKNOWN_LABEL]
    np.testing.assert_allclose(frames.confidence, [0.9, 0.5, 0.4, 0.4, 0.2, 0.45, 0.0], atol=1e-6)
    assert frames.disagrees.tolist() == [False, False, False, True, True, False, True]
    assert frames.rows(review=True, below=0.6).tolist() == [6, 4, 2, 3, 1]  # ties (0.4) keep map order
    assert frames.rows(review=True, below=0.0).tolist() == [6, 4, 3]
    assert frames.rows(review=True, below=0.6, label=0).tolist() == [4, 2, 3, 1]  # predicted or labelled a
    assert frames.rows(label=0).tolist() == [0, 3, 1, 5, 2]  # predicted a, most probable first
    assert frames.rows().tolist() == list(range(7))
    assert frames.counts() == [5, 1, 1]
    item = frames.item(4, {"a": "11", "b": "12", "c": None})
    assert item == {"predicted": "b", "probability": 0.7, "confidence": 0.2, "label": "a", "disagrees": True,
                    "top": [{"id": "12", "name": "b", "probability": 0.7},
                            {"id": "11", "name": "a", "probability": 0.2},
                            {"id": None, "name": "c", "probability": 0.1}]}


# --- end to end ---

@pytest.fixture(scope="module")
def tagged(worker, media_root, known_users, django_db_blocker):
    """Six videos of three kinds, ingested; three frames a video labelled with its kind, a
    softmax tagger trained on them; then the first unlabelled frame of a bars video labelled
    as the kind it is predicted not to be, and one of a pattern video with a new label.
    Yields the collection, those two frames and the editor's client."""
    folder = media_root / "predictions"
    for name, (source, extra) in VIDEOS.items():
        make_video(folder / name, seconds=4, source=source, extra=extra)
    with django_db_blocker.unblock():
        client = token_client("test-editor", "editor")
        collection = Collection.objects.create(name="predictions", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        label_first_frames(client, collection)
        train_tagger(client, collection)
        collection.refresh_from_db()
        picked = {}
        for kind, name in (("bars", None), ("pattern", UNKNOWN_NAME)):
            source = next(s for s in collection.sources.order_by("pk") if kind_of(s.path) == kind)
            frame = sampled_frames(source)[3]
            found = get_json(client, f"/api/collections/{collection.pk}/predictions/?page_size=200")["predictions"]
            predicted = next(p["predicted"] for p in found if (p["frame"]["source"], p["frame"]["frame"])
                             == (source.pk, frame))
            name = name or next(c for c in ("bars", "fractal", "pattern") if c != predicted)
            label(client, collection, name, [[source.pk, frame]])
            picked[name] = (source.pk, frame)
        yield collection, picked, client
        collection.delete()


def api(collection, query=""):
    return f"/api/collections/{collection.pk}/predictions/{query}"


def keys(items):
    return [(p["frame"]["source"], p["frame"]["frame"]) for p in items]


@pytest.mark.django_db
def test_every_frame_has_its_prediction_and_a_labels_frames_come_most_probable_first(tagged, client):
    collection, picked, _ = tagged
    everything = get_json(client, api(collection, "?page_size=200"))
    frames = sum(s.frame_count for s in collection.sources.all())
    assert everything["count"] == frames == len(everything["predictions"]) and everything["pages"] == 1
    tagger = everything["tagger"]
    assert tagger["classes"] == ["bars", "fractal", "pattern"] and tagger["version"] == 1
    ids = dict(Label.objects.filter(collection=collection).values_list("name", "pk"))
    assert [(l["id"], l["name"], l["colour"]) for l in tagger["labels"]] == [
        (str(ids[name]), name, TAG_COLOURS[i]) for i, name in enumerate(tagger["classes"])]
    assert sum(l["predicted"] for l in tagger["labels"]) == frames
    assert everything["below"] is None and everything["map_version"] == collection.embedding["map"]
    for item in everything["predictions"]:
        scores = [t["probability"] for t in item["top"]]
        assert len(item["top"]) == 3 and scores == sorted(scores, reverse=True)
        assert item["top"][0]["name"] == item["predicted"] and item["top"][0]["probability"] == item["probability"]
        assert item["top"][0]["id"] == str(ids[item["predicted"]])
    # The two frames labelled against the tagger disagree; every other labelled frame agrees.
    disagreeing = {key for key, item in zip(keys(everything["predictions"]), everything["predictions"])
                   if item["disagrees"]}
    assert disagreeing == set(picked.values())
    assert sum(item["label"] is not None for item in everything["predictions"]) == 18 + 2
    for entry in tagger["labels"]:
        chosen = get_json(client, api(collection, f"?label={entry['name']}&page_size=200"))
        assert chosen["count"] == entry["predicted"]
        assert {item["predicted"] for item in chosen["predictions"]} <= {entry["name"]}
        probabilities = [item["probability"] for item in chosen["predictions"]]
        assert probabilities == sorted(probabilities, reverse=True)
    assert client.get(api(collection, "?label=goal")).status_code == 404


@pytest.mark.django_db
def test_review_lists_disagreements_and_unsure_frames_least_sure_first(tagged, client):
    collection, picked, _ = tagged
    for below in (0.0, 0.6, 1.0):
        review = get_json(client, api(collection, f"?review=true&below={below}&page_size=200"))
        assert review["below"] == below
        items = review["predictions"]
        confidences = [item["confidence"] for item in items]
        assert confidences == sorted(confidences)
        assert all(item["disagrees"] or (item["label"] is None and item["probability"] < below) for item in items)
        assert set(picked.values()) <= set(keys(items))
    # Below 0, only the two frames whose label the tagger disagrees with; a label it does not
    # know has confidence 0.
    settled = dict(zip(keys(items := get_json(client, api(collection, "?review=true&below=0"))["predictions"]), items))
    assert set(settled) == set(picked.values())
    unknown = settled[picked[UNKNOWN_NAME]]
    assert unknown["label"] == UNKNOWN_NAME and unknown["confidence"] == 0.0 and unknown["disagrees"]
    wrong = next(name for name in picked if name != UNKNOWN_NAME)
    assert settled[picked[wrong]]["label"] == wrong and settled[picked[wrong]]["predicted"] != wrong
    # The default threshold is the setting's; a label keeps the frames predicted or labelled as it.
    assert get_json(client, api(collection, "?review=true"))["below"] == 0.6
    only = get_json(client, api(collection, f"?review=true&below=1&label={wrong}&page_size=200"))["predictions"]
    assert picked[wrong] in keys(only) and all(wrong in (item["predicted"], item["label"]) for item in only)


@pytest.mark.django_db
def test_pages_follow_each_other_and_stop_at_the_last(tagged, client):
    collection, _, _ = tagged
    whole = get_json(client, api(collection, "?review=true&below=1&page_size=200"))
    pages = -(-whole["count"] // 7)
    read = []
    for page in range(1, pages + 1):
        answer = get_json(client, api(collection, f"?review=true&below=1&page_size=7&page={page}"))
        assert answer["pages"] == pages and answer["page"] == page and answer["count"] == whole["count"]
        read += answer["predictions"]
    assert keys(read) == keys(whole["predictions"])
    missing = client.get(api(collection, f"?review=true&below=1&page_size=7&page={pages + 1}"))
    assert missing.status_code == 404 and f"{pages} page(s)" in missing.json()["detail"]
    for bad in ("?page_size=201", "?below=1.5", "?review=yes", "?page=0", "?label="):
        assert client.get(api(collection, bad)).status_code == 400, bad


@pytest.mark.django_db
def test_each_video_gets_the_mean_of_its_frames(tagged, client):
    collection, _, _ = tagged
    videos = get_json(client, api(collection, "videos/?page_size=200"))
    sources = {s.pk: s for s in collection.sources.all()}
    assert videos["count"] == 6 and [v["source"] for v in videos["videos"]] == sorted(sources)
    for video in videos["videos"]:
        source = sources[video["source"]]
        assert video["frames"] == source.frame_count and video["name"] == source.path.rsplit("/", 1)[1]
        assert video["predicted"] == video["top"][0]["name"] and video["probability"] == video["top"][0]["probability"]
        assert sum(t["probability"] for t in video["top"]) == pytest.approx(1.0, abs=1e-3)
    # The mean of its frames' probabilities, as the frames' own answer gives them.
    frames = get_json(client, api(collection, "?page_size=200"))["predictions"]
    first = videos["videos"][0]
    own = [item for item in frames if item["frame"]["source"] == first["source"]]
    mean = np.mean([{t["name"]: t["probability"] for t in item["top"]}[first["predicted"]] for item in own])
    assert first["probability"] == pytest.approx(mean, abs=1e-3)
    chosen = get_json(client, api(collection, f"videos/?label={first['predicted']}"))["videos"]
    assert first["source"] in [v["source"] for v in chosen] and {v["predicted"] for v in chosen} == {first["predicted"]}
    assert client.get(api(collection, "videos/?page=2&page_size=6")).status_code == 404


@pytest.mark.django_db
def test_the_overlay_tiles_are_served_for_the_tagger_and_map_version(tagged, client, viewer_client, anonymous_client):
    collection, _, _ = tagged
    url = get_json(client, api(collection))["tagger"]["tile_url"].replace("{z}/{x}/{y}{r}", "0/0/0")
    answer = client.get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "image/png"
    assert "immutable" in answer["Cache-Control"]
    pixels = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels.shape == (144, 256, 4) and pixels[..., 3].max() == 255 and pixels[..., 3].min() == 0
    assert client.get(url + "?only=2").status_code == 200
    sharp = client.get(url.replace("0.png", "0@2x.png") + "?only=2")  # high-DPI screens: twice the pixels
    assert cv2.imdecode(np.frombuffer(sharp.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (288, 512, 4)
    for bad in ("?only=3", "?only=-1", "?only=x"):
        assert client.get(url + bad).status_code == 404, bad
    assert client.get(url.replace("/0/0/0.png", "/0/1/0.png")).status_code == 404
    assert viewer_client.get(url).status_code == 200
    assert anonymous_client.get(url).status_code in (302, 401, 403)


@pytest.mark.django_db
def test_viewers_read_predictions_and_strangers_do_not(tagged, viewer_client, anonymous_client):
    collection, _, _ = tagged
    for path in ("?review=true", "videos/"):
        assert viewer_client.get(api(collection, path)).status_code == 200
        assert anonymous_client.get(api(collection, path)).status_code in (401, 403)
    assert viewer_client.get(f"/collections/{collection.pk}/review/").status_code == 200


@pytest.mark.django_db
def test_without_a_tagger_or_its_predictions_the_answer_says_why(tagged, client):
    collection, _, _ = tagged
    Collection.objects.filter(pk=collection.pk).update(tagger=None)
    for path in ("", "videos/"):
        answer = client.get(api(collection, path))
        assert answer.status_code == 409 and "has no tagger yet" in answer.json()["detail"]
    untried = Tagger.objects.create(collection=collection, version=99, head="softmax", classes=["a", "b"])
    Collection.objects.filter(pk=collection.pk).update(tagger=untried)
    answer = client.get(api(collection))
    assert answer.status_code == 409 and "tagger 99 has not tagged the frames of the current map yet" in \
        answer.json()["detail"]
    empty = Collection.objects.create(name="no map")
    answer = client.get(api(empty))
    assert answer.status_code == 409 and "has no map yet" in answer.json()["detail"]
    assert client.get("/api/collections/999999/predictions/").status_code == 404


IMAGES_LOADED = ("[...document.querySelectorAll('#grid .member img')].slice(0, 12)"
                 ".every((i) => i.complete && i.naturalWidth > 0)")


def review_keys(browser):
    return browser.execute_script("return [...document.querySelectorAll('#grid .member')].map((m) => m.dataset.key)")


# Last in the module: a transactional test empties the database when it ends (the browser's
# labels are written by the web server, which a test's open transaction would hold up).
@pytest.mark.django_db(transaction=True)
def test_review_confirm_and_see_the_tagger_in_a_real_browser(browser, web_server, tagged, client):
    collection, picked, _ = tagged
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    expected = get_json(client, api(collection, "?review=true&below=1&page_size=60"))

    # The review page: least sure first, as the API orders them, with the prediction and the label.
    browser.get(f"{web_server}/collections/{collection.pk}/review/?below=1")
    wait_for(browser, "document.querySelectorAll('#grid .member img').length > 0")
    wait_for(browser, IMAGES_LOADED)
    assert review_keys(browser) == [f"{s}:{f}" for s, f in keys(expected["predictions"])]
    confidences = browser.execute_script(
        "return [...document.querySelectorAll('#grid .member')].map((m) => +m.dataset.confidence)")
    assert confidences == sorted(confidences)
    unknown = browser.find_element("css selector", '#grid .member[data-key="%d:%d"]' % picked[UNKNOWN_NAME])
    assert unknown.find_element("css selector", ".chip.given").text == f"label: {UNKNOWN_NAME}"
    assert "disagrees" in unknown.get_attribute("class")
    assert f"{expected['count']} frame(s) to review" in browser.find_element("id", "review-facts").text
    assert browser.execute_script(f"return {NOTHING_RAN}")
    browser.save_screenshot(f"{SHOTS}/review-before.png")

    # Confirm the predictions of the first two: each takes the label predicted for it, and
    # both leave the list (a person agreed with the tagger).
    items = browser.find_elements("css selector", "#grid .member")
    chosen = {items[i].get_attribute("data-key"): items[i].get_attribute("data-predicted") for i in (0, 1)}
    items[0].click()
    items[1].click()
    assert browser.find_element("id", "selected-count").text == "2 selected"
    browser.find_element("id", "confirm-selected").click()
    note = wait_for(browser, "document.getElementById('note').textContent.startsWith('Confirmed: labelled') && "
                             "document.getElementById('note').textContent")
    assert note == "Confirmed: labelled " + ", ".join(f"1 as '{name}'" for name in dict.fromkeys(chosen.values())) + "."
    for key, predicted in chosen.items():
        source, frame = map(int, key.split(":"))
        assert FrameLabel.objects.get(source_id=source, frame=frame).label.name == predicted
    assert not set(chosen) & set(review_keys(browser))
    wait_for(browser, IMAGES_LOADED)
    assert browser.find_element("id", "selected-count").text == "0 selected"
    browser.save_screenshot(f"{SHOTS}/review-after-confirm.png")

    # The collection page: the tagger in use, its figures and the confusion matrix as a picture.
    browser.get(f"{web_server}/collections/{collection.pk}/")
    wait_for(browser, "document.querySelectorAll('svg.confusion rect').length === 9")
    assert browser.find_element("css selector", ".tagger-summary").text.startswith("Tagger 1 (softmax head, 3 labels")
    assert len(browser.find_elements("css selector", "table.per-label tbody tr")) == 3
    unvalidated = Tagger.objects.filter(collection=collection).latest("version").report["unvalidated"]
    notes = [p.text for p in browser.find_elements("css selector", "#tagger-current .tagger-summary")]
    assert any(note.startswith(f"Not validated: {', '.join(unvalidated)}") for note in notes) == bool(unvalidated)
    labels = browser.execute_script("return [...document.querySelectorAll("
                                    "'svg.confusion > text:not(.count):not(.axis)')]"
                                    ".map((t) => t.firstChild.textContent)")
    assert labels == ["bars", "bars", "fractal", "fractal", "pattern", "pattern"]
    browser.execute_script("document.getElementById('tagger-section').scrollIntoView()")
    browser.save_screenshot(f"{SHOTS}/collection-tagger.png")

    # The map coloured by predicted label, then one label alone.
    browser.get(f"{web_server}/collections/{collection.pk}/map/#tags=1")
    wait_for(browser, "document.querySelectorAll('.tag-legend .tag-entry').length === 3")
    wait_for(browser, "document.querySelectorAll('.tag-overlay img.leaflet-tile-loaded').length > 0")
    assert browser.find_element("id", "show-tags").get_attribute("aria-pressed") == "true"
    time.sleep(0.5)  # Leaflet fades tiles in
    browser.save_screenshot(f"{SHOTS}/map-tags.png")
    browser.find_element("css selector", ".tag-entry[data-label='fractal']").click()
    wait_for(browser, "location.hash.includes('tag=fractal')")
    wait_for(browser, "[...document.querySelectorAll('.tag-overlay img.leaflet-tile-loaded')].some((i) => "
                      "i.src.endsWith('?only=1'))")
    assert browser.find_element("css selector", ".tag-legend .review-link").get_attribute("href").endswith(
        f"/collections/{collection.pk}/review/?label=fractal")
    time.sleep(0.5)
    browser.save_screenshot(f"{SHOTS}/map-tags-fractal.png")
