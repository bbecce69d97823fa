"""Serving the map: its JSON API, tiles, video files with Range, and a retraining that
keeps the old map served, on a collection ingested once for the module by the real
worker (random Xception weights): a video of three scenes, a re-encoded copy of it,
and a video of two other scenes."""
import math
import time

import cv2
import numpy as np
import pytest

from explorer.jobs import start_training
from explorer.models import Collection, Job
from workers.pipeline.tiles import BACKGROUND, LAYOUT_REVISION

pytestmark = [pytest.mark.worker, pytest.mark.django_db]


@pytest.fixture(scope="module")
def mapped(map_collection):
    """The collection (tests/conftest.py) and its three sources by name."""
    return map_collection


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, response.content[:500]
    return response.json()


def decode(response):
    return cv2.imdecode(np.frombuffer(b"".join(response.streaming_content), np.uint8), cv2.IMREAD_COLOR)


def test_map_state_and_tiles_that_are_rendered_once_and_cached(client, mapped):
    collection, _ = mapped
    state = get_json(client, f"/api/collections/{collection.pk}/map/")
    assert state["ready"] and state["frames"] == 96 and state["random_weights"]
    assert state["version"] == collection.embedding["map"] and state["jobs"] == []
    tile_url = state["tile_url"].format(z=1, x=0, y=1, r="")
    response = client.get(tile_url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert "immutable" in response["Cache-Control"]
    pixels = decode(response)
    assert pixels.shape == (144, 256, 3)
    drawn = np.abs(pixels.astype(int) - BACKGROUND[::-1]).sum(axis=2) > 30
    assert 0.05 < drawn.mean(), "the tile should show thumbnails"
    cached = collection.maps_dir / state["version"] / "tiles-v2" / "1" / "0" / "1.jpg"
    assert cached.exists()
    assert np.array_equal(decode(client.get(tile_url)), pixels)
    # For high-DPI screens ({r} = @2x): the same tile at twice the pixels, cached apart.
    sharp = decode(client.get(state["tile_url"].format(z=1, x=0, y=1, r="@2x")))
    assert sharp.shape == (288, 512, 3) and cached.with_name("1@2x.jpg").exists()
    assert np.abs(cv2.resize(sharp, (256, 144), interpolation=cv2.INTER_AREA).astype(int) - pixels).mean() < 6

    deepest = state["max_zoom"]
    assert client.get(state["tile_url"].format(z=deepest + 1, x=0, y=0, r="")).status_code == 404
    assert client.get(state["tile_url"].format(z=2, x=4, y=0, r="@2x")).status_code == 404
    revision = f"/{LAYOUT_REVISION}/"
    assert revision in state["tile_url"]  # browsers keep tiles for good: another placement rule, other URLs
    assert client.get(f"/collections/{collection.pk}/tiles/0123456789abcdef{revision}0/0/0.jpg").status_code == 404
    assert client.get(f"/collections/{collection.pk}/tiles/..%2F..%2Fsources{revision}0/0/0.jpg").status_code == 404
    assert get_json(client, "/api/collections/9999/map/", 404)["detail"]


def test_the_frame_under_a_point_is_the_one_its_tile_draws(client, mapped):
    collection, sources = mapped
    state = get_json(client, f"/api/collections/{collection.pk}/map/")
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={sources['original.mp4'].pk}")
    x, y = path["points"][18]
    zoom = state["max_zoom"]
    hit = get_json(client, f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}&zoom={zoom}")
    # At the deepest zoom the frame fills its own tile; it is the one drawn at (x, y).
    column, row = math.floor((x + 1) / 2 * 2 ** zoom), math.floor((1 - y) / 2 * 2 ** zoom)
    tile = decode(client.get(state["tile_url"].format(z=zoom, x=column, y=row, r="")))
    image = cv2.imdecode(np.frombuffer(client.get(hit["image"]).content, np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.resize(image, (256, 144), interpolation=cv2.INTER_AREA)
    assert np.abs(tile.astype(int) - expected).mean() < 6
    # Its box is the thumbnail's: at the deepest zoom, the whole tile.
    side = 2 / 2 ** zoom
    assert hit["box"] == pytest.approx([-1 + column * side, 1 - (row + 1) * side, -1 + (column + 1) * side,
                                        1 - row * side])
    same = get_json(client, f"/api/collections/{collection.pk}/map/frame/?source={hit['source']}&frame={hit['frame']}")
    assert same == {key: value for key, value in hit.items() if key != "box"}
    # Zoomed out, the point hits the thumbnail drawn over it, whose box holds the point.
    for shallower in range(zoom):
        box = get_json(client, f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}&zoom={shallower}")["box"]
        assert box[0] <= x <= box[2] and box[1] <= y <= box[3] and box[2] - box[0] <= 2 / 2 ** shallower
    assert hit["name"] in ("original.mp4", "copy.mp4") and hit["video"] == f"/sources/{hit['source']}/file"

    base = f"/api/collections/{collection.pk}/map/"
    for bad in ("point/?x=nan&y=0&zoom=1", "point/?x=2&y=0&zoom=1", "point/?x=0&zoom=1", "point/?x=0&x=0&y=0&zoom=1",
                "frame/?source=1", f"frame/?source={hit['source']}&frame=-1"):
        assert get_json(client, f"{base}{bad}", 400)
    assert "this map has zoom levels 0 to" in get_json(client, f"{base}point/?x=0&y=0&zoom={zoom + 1}", 404)["detail"]
    assert "not on this map" in get_json(client, f"{base}frame/?source={hit['source']}&frame=99999", 404)["detail"]


def test_a_videos_path_is_its_frames_in_time_order(client, mapped):
    collection, sources = mapped
    other = sources["other.mp4"]
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={other.pk}")
    assert len(path["points"]) == other.frame_count == 24
    assert path["times"] == sorted(path["times"]) and path["frames"][:3] == [0, 10, 20]
    assert all(-1 <= v <= 1 for point in path["points"] for v in point)
    assert get_json(client, f"/api/collections/{collection.pk}/map/path/?source=424242", 404)


def test_the_most_similar_clip_is_the_reencoded_copy_at_the_same_moment(client, mapped):
    collection, sources = mapped
    original, copy = sources["original.mp4"], sources["copy.mp4"]
    found = get_json(client, f"/api/collections/{collection.pk}/map/similar/?source={original.pk}&frame=180")
    query, clips = found["query"], found["clips"]
    assert query["source"] == original.pk and query["start"] <= 6.0 <= query["stop"]
    assert clips[0]["source"] == copy.pk and clips[0]["start"] == pytest.approx(query["start"], abs=0.05)
    assert clips[0]["score"] > 0.5 and clips[0]["score"] == max(c["score"] for c in clips)
    assert not any(c["source"] == original.pk and c["start"] < query["stop"] and c["stop"] > query["start"]
                   for c in clips), "the query's own stretch is left out"
    assert len(clips[0]["frames"]) == len(query["frames"])
    # And the other way round.
    back = get_json(client, f"/api/collections/{collection.pk}/map/similar/?source={copy.pk}&frame=180&top=3")
    assert back["clips"][0]["source"] == original.pk and len(back["clips"]) <= 3
    assert get_json(client, f"/api/collections/{collection.pk}/map/similar/?source={copy.pk}&frame=180&top=0", 400)
    others = get_json(client, f"/api/collections/{collection.pk}/map/similar/?source={original.pk}&frame=180&top=50"
                              "&exclude_source=true")["clips"]
    assert others and all(c["source"] != original.pk for c in others)


def test_the_most_dissimilar_clips_are_distinct_stretches(client, mapped):
    collection, _ = mapped
    clips = get_json(client, f"/api/collections/{collection.pk}/map/dissimilar/")["clips"]
    assert len(clips) == 6  # DISSIMILAR_CLIPS is 8, but there are only six 6-second stretches
    stretches = {(c["source"], c["start"]) for c in clips}
    assert len(stretches) == 6 and all(c["score"] is None and c["frames"] for c in clips)
    assert len({c["source"] for c in clips}) == 3


def test_video_files_answer_range_requests_with_206(client, mapped):
    _, sources = mapped
    source = sources["copy.mp4"]
    content = open(source.path, "rb").read()
    url = f"/sources/{source.pk}/file"
    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes" and whole["Content-Type"] == "video/mp4"
    assert b"".join(whole.streaming_content) == content
    part = client.get(url, HTTP_RANGE="bytes=1000-1999")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 1000-1999/{len(content)}"
    assert b"".join(part.streaming_content) == content[1000:2000] and part["Content-Length"] == "1000"
    tail = client.get(url, HTTP_RANGE="bytes=-500")
    assert b"".join(tail.streaming_content) == content[-500:]
    open_ended = client.get(url, HTTP_RANGE=f"bytes={len(content) - 10}-")
    assert b"".join(open_ended.streaming_content) == content[-10:]
    unsatisfiable = client.get(url, HTTP_RANGE=f"bytes={len(content)}-")
    assert unsatisfiable.status_code == 416 and unsatisfiable["Content-Range"] == f"bytes */{len(content)}"
    assert client.get("/sources/999999/file").status_code == 404


def test_behind_nginx_video_files_are_handed_over_with_x_accel_redirect(client, mapped, media_root, settings):
    _, sources = mapped
    settings.MEDIA_ROOTS = [media_root.resolve()]
    settings.MEDIA_ACCEL_REDIRECT = "/protected/media/"
    response = client.get(f"/sources/{sources['copy.mp4'].pk}/file", HTTP_RANGE="bytes=0-99")
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == "/protected/media/map/copy.mp4"
    assert response["Content-Type"] == "video/mp4"
    settings.MEDIA_ROOTS = [media_root.resolve() / "elsewhere"]  # not under the root nginx serves: Django does
    assert client.get(f"/sources/{sources['copy.mp4'].pk}/file", HTTP_RANGE="bytes=0-99").status_code == 206


def test_a_collection_without_a_map_reports_its_progress(client, mapped):
    waiting = Collection.objects.create(name="waiting")
    job = Job.objects.create(collection=waiting, stage="features", status=Job.Status.RUNNING, progress=0.4,
                             message="3 of 8 feature chunk(s) done")
    state = get_json(client, f"/api/collections/{waiting.pk}/map/")
    assert not state["ready"] and state["jobs"][0]["id"] == job.pk
    assert "stage features (40%" in state["status"]
    detail = get_json(client, f"/api/collections/{waiting.pk}/map/similar/?source=1&frame=0", 409)["detail"]
    assert "no map yet" in detail and f"job {job.pk}" in detail
    assert client.get(f"/collections/{waiting.pk}/map/").status_code == 200


def wait_for(browser, script, timeout=30, message=""):
    """Poll a JavaScript expression in the page until it is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda driver: driver.execute_script(f"return {script}"), message or script)


# Share of each loaded tile's pixels that differ from the empty background.
DRAWN_SHARE = """[...document.querySelectorAll('img.leaflet-tile-loaded')].map((img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4)
    if (Math.abs(data[i] - %d) + Math.abs(data[i + 1] - %d) + Math.abs(data[i + 2] - %d) > 30) drawn++;
  return [img.src, drawn / (data.length / 4)];
})""" % BACKGROUND


def hover_centre(browser, map_element, tries=3):
    """Rest the pointer on the map's centre until the hover's tooltip shows; its text. From
    beside the centre (another side each try), then onto it: a pointer already resting there
    sends no move. Tried again when none shows: on a loaded machine the map may still be
    settling into the view the address gives when the first move arrives, and the pointer
    then rests on another cell."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains

    for attempt, offset in zip(range(tries), ((40, 40), (-40, -40), (40, -40))):
        ActionChains(browser).move_to_element_with_offset(map_element, *offset).pause(0.2).perform()
        # The hover remembers the last cell it asked about: forget it, so the move onto the centre
        # asks again even when the pointer came from the same cell or a request was still on its way.
        browser.execute_script("clearHover()")
        ActionChains(browser).move_to_element(map_element).pause(0.3).perform()
        try:
            return wait_for(browser, "document.querySelector('.frame-tooltip')?.textContent", timeout=10)
        except TimeoutException:
            if attempt == tries - 1:
                raise


def clock(seconds):
    minutes = int(seconds // 60)
    return f"{minutes}:{seconds - 60 * minutes:04.1f}"


def test_the_map_in_a_real_browser(browser, web_server, mapped, client):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    from tests.conftest import SCREENSHOTS

    collection, sources = mapped
    page = f"{web_server}/collections/{collection.pk}/map/"
    state = get_json(client, f"/api/collections/{collection.pk}/map/")

    # The map loads, with tiles that show thumbnails.
    browser.get(page)
    wait_for(browser, "document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    wait_for(browser, "[...document.querySelectorAll('img.leaflet-tile')].every((img) => img.complete)")
    shares = browser.execute_script(f"return {DRAWN_SHARE}")
    assert max(share for _, share in shares) > 0.2, shares
    start_zoom = int(wait_for(browser, "new URLSearchParams(location.hash.slice(1)).get('z')"))
    # It opens fitted to its frames and centred on them; after zooming in elsewhere, Home (or the
    # fit button) brings that view back.
    fitted = ("(() => { const c = contentBounds(), v = map.getBounds(), w = v.getEast() - v.getWest(),"
              " h = v.getNorth() - v.getSouth();"
              " return v.contains(c)"
              " && ((c.getEast() - c.getWest()) / w > 0.45 || (c.getNorth() - c.getSouth()) / h > 0.45)"
              " && Math.abs(v.getCenter().lng - c.getCenter().lng) < 0.05 * w"
              " && Math.abs(v.getCenter().lat - c.getCenter().lat) < 0.05 * h; })()")
    assert browser.execute_script(f"return {fitted}")
    for fit in (lambda: browser.find_element("id", "map").send_keys(Keys.HOME),
                lambda: browser.find_element("css selector", "button.fit-control").click()):
        browser.execute_script("map.setView(toLatLng(0.8, -0.8), map.getZoom() + 2, { animate: false })")
        assert not browser.execute_script(f"return {fitted}")
        fit()
        wait_for(browser, fitted)
        wait_for(browser, f"new URLSearchParams(location.hash.slice(1)).get('z') === '{start_zoom}'")  # moved
    browser.save_screenshot(str(SCREENSHOTS / "map-overview.png"))

    # Keyboard zoom: the next level's tiles load, and they hold more distinct frames.
    browser.find_element("id", "map").send_keys(Keys.ADD)  # the keypad's +
    wait_for(browser, f"new URLSearchParams(location.hash.slice(1)).get('z') === '{start_zoom + 1}'")
    wait_for(browser, f"[...document.querySelectorAll('img.leaflet-tile-loaded')].some("
                      f"(img) => img.src.includes('/{start_zoom + 1}/'))")
    # "+" typed with Shift (as most keyboards make it) and "-" zoom one level a press too.
    for key, level in (("-", start_zoom), ("+", start_zoom + 1)):
        browser.find_element("id", "map").send_keys(key)
        wait_for(browser, f"new URLSearchParams(location.hash.slice(1)).get('z') === '{level}'")
        time.sleep(0.5)  # no second step follows
        assert browser.execute_script("return map.getZoom()") == level
    from workers.pipeline.map_versions import MapSnapshot

    snapshot = MapSnapshot(collection.maps_dir / state["version"], collection.sources_dir)
    levels = [snapshot.grid.level(z) for z in (start_zoom, start_zoom + 1)]
    assert snapshot.cells.distinct_frames(levels[1]) > snapshot.cells.distinct_frames(levels[0])

    # Click a known frame: the one drawn where frame 180 (6.0 s) of the original lies.
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={sources['original.mp4'].pk}")
    x, y = path["points"][path["frames"].index(180)]
    zoom = state["max_zoom"] - 2
    hit = get_json(client, f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}&zoom={zoom}")
    # The view centred on the middle of the thumbnail drawn for it: a frame may lie near its cell's edge
    # (frames of one video sit close together), where the address's rounding could tip the centre over.
    x0, y0, x1, y1 = hit["box"]
    browser.get(f"{page}#z={zoom}&x={(x0 + x1) / 2}&y={(y0 + y1) / 2}")
    browser.refresh()  # a new hash alone does not reload the page
    wait_for(browser, "document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    map_element = browser.find_element("id", "map")
    tooltip = hover_centre(browser, map_element)
    assert tooltip == f"{hit['name']} · {clock(hit['time'])}"
    ActionChains(browser).click().perform()
    wait_for(browser, "!document.getElementById('panel').hidden")
    assert browser.find_element("css selector", "#selection h2").text == hit["name"]
    assert clock(hit["time"]).strip() in browser.find_element("css selector", "#selection .when").text
    # The video plays from the start of that moment's clip: the browser sought there through Range requests.
    # Where playback began (the first range the video has played), however far it has gone since.
    near = ("(() => { const v = document.querySelector('#selection video');"
            " return v && v.played.length > 0 && Math.abs(v.played.start(0) - %f) < 0.5"
            " && [v.currentSrc, v.played.start(0)]; })()")
    clip_start = max(0.0, hit["time"] - state["clip_seconds"] / 2)  # the start of the clicked frame's clip
    seek = wait_for(browser, near % clip_start, message=f"the video never reached {clip_start} s")
    assert f"/sources/{hit['source']}/file" in seek[0]
    assert browser.execute_script("return document.querySelector('#selection video').error") is None
    # Similar clips: first the other copy of the same moment; paths drawn on the map.
    counterpart = sources["copy.mp4" if hit["name"] == "original.mp4" else "original.mp4"]
    first = wait_for(browser, "document.querySelector('#clips li.clip')?.dataset.source")
    assert int(first) == counterpart.pk
    assert len(browser.find_elements("css selector", "#clips li.clip")) >= 2
    # The clicked frame's whole video is drawn in time order (test_map_browser.py: its direction, and
    # the similar clips' paths on hover).
    hit_path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={hit['source']}")
    lines = "overlays.getLayers().filter((l) => l instanceof L.Polyline && ['video', 'clip'].includes(l.options.role))"
    wait_for(browser, f"{lines}.some((l) => l.getLatLngs().length === {len(hit_path['points'])})")
    drawn = browser.execute_script(f"return {lines}.map((l) => l.getLatLngs().map((p) => fromLatLng(p)))")
    assert any(len(line) == len(hit_path["points"]) and all(
        abs(p["x"] - x) < 1e-4 and abs(p["y"] - y) < 1e-4 for p, (x, y) in zip(line, hit_path["points"]))
        for line in drawn), "the video's path is not on the map"
    # "Other videos only" lists none of the clicked video's own clips, and draws only those it lists.
    fresh_list = "document.querySelector('#clips ol') && !document.querySelector('#clips ol').dataset.seen"
    browser.execute_script("document.querySelector('#clips ol').dataset.seen = '1'")
    browser.find_element("id", "other-videos").click()
    wait_for(browser, f"{fresh_list} && document.getElementById('other-videos').checked")
    shown = [int(e.get_attribute("data-source")) for e in browser.find_elements("css selector", "#clips li.clip")]
    assert hit["source"] not in shown
    browser.execute_script("document.querySelector('#clips ol').dataset.seen = '1'")
    browser.find_element("id", "other-videos").click()  # back as it was, for the next visit too
    wait_for(browser, f"{fresh_list} && !document.getElementById('other-videos').checked")
    assert f"frame={hit['source']}:{hit['frame']}" in browser.current_url
    browser.save_screenshot(str(SCREENSHOTS / "map-selected.png"))
    # Its play button plays that clip, from its start, in the panel.
    clip_start = float(browser.find_element("css selector", "#clips li.clip").get_attribute("data-start"))
    browser.find_element("css selector", "#clips li.clip button").click()
    playing = wait_for(browser, near % clip_start, message=f"the clip never played from {clip_start} s")
    assert f"/sources/{counterpart.pk}/file" in playing[0]

    # The URL is a shareable view: opened afresh, it shows the same frame.
    shared = browser.current_url
    browser.get("about:blank")
    browser.get(shared)
    wait_for(browser, "!document.getElementById('panel').hidden && "
                      "document.querySelector('#selection h2')?.textContent")
    assert browser.find_element("css selector", "#selection h2").text == hit["name"]
    browser.find_element("id", "map").send_keys(Keys.ESCAPE)
    wait_for(browser, "document.getElementById('panel').hidden")

    # The most different clips.
    browser.find_element("id", "show-dissimilar").click()
    wait_for(browser, "document.querySelectorAll('#clips li.clip').length === 6")
    browser.save_screenshot(str(SCREENSHOTS / "map-dissimilar.png"))

    # A poster of the view: the grid previewed, then rendered by the worker and downloaded.
    browser.find_element("id", "export-poster").click()
    wait_for(browser, "document.querySelectorAll('#poster-grid img').length > 0")
    assert "px" in browser.find_element("id", "poster-summary").text
    for name, value in (("columns", "4"), ("rows", "3"), ("tile_width", "200"), ("tile_height", "112")):
        field = browser.find_element("css selector", f".poster-form [name={name}]")
        field.clear()
        field.send_keys(value)
    wait_for(browser, "document.getElementById('poster-summary').textContent.startsWith('800 × 336 px')")
    assert len(browser.find_elements("css selector", "#poster-grid > *")) == 12
    browser.save_screenshot(str(SCREENSHOTS / "poster-preview.png"))
    browser.find_element("id", "render-poster").click()
    link = wait_for(browser, "document.querySelector('#posters a.download')?.href", timeout=120)
    import urllib.request

    with urllib.request.urlopen(link) as download:
        assert download.headers["Content-Type"] == "image/png"
        data = download.read()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (336, 800, 3)


# Last in the module: a transactional test empties the database when it ends.
@pytest.mark.django_db(transaction=True)
def test_retraining_keeps_the_old_map_served_until_the_new_one_is_published(client, mapped):
    collection, _ = mapped
    old = get_json(client, f"/api/collections/{collection.pk}/map/")
    job = start_training(collection)
    seen_during = set()
    while True:
        job.refresh_from_db()
        state = get_json(client, f"/api/collections/{collection.pk}/map/")
        if job.finished:
            break
        if job.stage in ("pca", "train", "layout") and state["version"] == old["version"]:
            assert client.get(old["tile_url"].format(z=0, x=0, y=0, r="")).status_code == 200
            seen_during.add(job.stage)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert seen_during & {"pca", "train"}, "the old map was served while the new one was trained"
    new = get_json(client, f"/api/collections/{collection.pk}/map/")
    assert new["version"] != old["version"] and new["frames"] == old["frames"]
    # The version before stays on disk for pages that still show it; older ones go.
    assert client.get(old["tile_url"].format(z=0, x=0, y=0, r="")).status_code == 200
    assert sorted(p.name for p in collection.maps_dir.iterdir()) == sorted([old["version"], new["version"]])
