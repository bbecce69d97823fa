"""The map as people use it, in real headless Chromium on a collection the real worker
ingested (tests/conftest.py map_collection): the address is the state (Back, Forward and a
hand-edited hash move the map), a search box jumps to a file, the clicked video's path has
a direction while similar clips' paths wait for a hover, the heading follows what plays,
controls have names and the keyboard reaches them, the poster window stays in sight beside
the panel, thumbnails fill their cells at the deepest zoom (crisp on a high-DPI screen), and
a first visit gets a tour that can be dismissed for good."""
import time

import pytest

from tests.conftest import SCREENSHOTS, skip_tour
from tests.test_map_serving import get_json, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.browser]

HASH = "Object.fromEntries(new URLSearchParams(location.hash.slice(1)))"
SETTLED = ("document.querySelectorAll('img.leaflet-tile-loaded').length > 0"
           " && [...document.querySelectorAll('img.leaflet-tile')].every((img) => img.complete)")
PANEL_NAME = "!document.getElementById('panel').hidden && document.querySelector('#selection h2')?.textContent"


@pytest.fixture(scope="module")
def page(map_collection, web_server):
    collection, sources = map_collection
    return f"{web_server}/collections/{collection.pk}/map/", collection, sources


def open_map(browser, url):
    browser.get("about:blank")  # a new document, even when only the hash differs
    browser.get(url)
    wait_for(browser, SETTLED)


def open_a_frame_of_the_original(browser, page, client):
    """The map opened on frame 2 of original.mp4, its similar clips listed; the source."""
    url, collection, sources = page
    original = sources["original.mp4"]
    number, (x, y) = frame_of(client, collection, original, 2)
    open_map(browser, f"{url}#z=3&x={x}&y={y}&frame={original.pk}:{number}")
    wait_for(browser, "document.querySelectorAll('#clips li.clip').length >= 2")
    return original


def frame_of(client, collection, source, index=0):
    """The `index`th frame of a source on the map: its number and place."""
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={source.pk}")
    return path["frames"][index], path["points"][index]


@pytest.mark.django_db
def test_the_address_is_the_state_back_forward_and_an_edited_hash_move_the_map(browser, page, client):
    from selenium.webdriver.common.keys import Keys

    url, collection, sources = page
    open_map(browser, url)
    fitted = browser.execute_script(f"return {HASH}")
    browser.find_element("id", "map").send_keys("+")
    wait_for(browser, f"{HASH}.z === '{int(fitted['z']) + 1}'")
    zoomed = browser.execute_script(f"return {HASH}")
    # Enter opens the frame in the middle of the map: a step of its own.
    number, (x, y) = frame_of(client, collection, sources["other.mp4"], 3)
    browser.execute_script(f"map.setView(toLatLng({x}, {y}), map.getZoom(), {{ animate: false }})")
    moved = browser.execute_script(f"return {HASH}")
    browser.find_element("id", "map").send_keys(Keys.ENTER)
    name = wait_for(browser, PANEL_NAME)
    opened = wait_for(browser, f"{HASH}.frame && {HASH}")
    assert name and opened["z"] == moved["z"]
    # Back closes the frame, then returns to each earlier view; Forward replays them.
    for expected in (moved, zoomed, fitted):
        browser.back()
        wait_for(browser, f"{HASH}.z === '{expected['z']}' && map.getZoom() === {int(expected['z'])}"
                          f" && !{HASH}.frame && document.getElementById('panel').hidden", message=str(expected))
        centre = browser.execute_script("return fromLatLng(map.getCenter())")
        assert abs(centre["x"] - float(expected["x"])) < 2e-3 and abs(centre["y"] - float(expected["y"])) < 2e-3
    for expected in (zoomed, moved, opened):
        browser.forward()
        wait_for(browser, f"{HASH}.z === '{expected['z']}' && map.getZoom() === {int(expected['z'])}")
    assert wait_for(browser, PANEL_NAME) == name
    # Back while a frame is still loading (the network slowed down): the frame named by the entry
    # left never opens over the entry reached, nor writes itself into it.
    browser.back()
    wait_for(browser, f"!{HASH}.frame && document.getElementById('panel').hidden")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        browser.forward()
        wait_for(browser, f"{HASH}.frame === '{opened['frame']}'")  # marked at once, while it loads
        browser.back()
        time.sleep(4)  # the frame's answer arrives meanwhile
        assert browser.execute_script(f"return [{HASH}.frame, document.getElementById('panel').hidden]") == [None,
                                                                                                          True]
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    browser.forward()
    assert wait_for(browser, PANEL_NAME) == name
    # An address edited by hand: the map goes there and opens the frame it names.
    other = sources["original.mp4"]
    number, (x, y) = frame_of(client, collection, other, 5)
    browser.execute_script(f"location.hash = '#z=3&x={x:.4f}&y={y:.4f}&frame={other.pk}:{number}'")
    wait_for(browser, f"map.getZoom() === 3 && document.querySelector('#selection h2')?.textContent === 'original.mp4'"
                      f" && document.querySelector('#selection .when').textContent.includes('frame {number}')")
    centre = browser.execute_script("return fromLatLng(map.getCenter())")
    assert abs(centre["x"] - x) < 2e-3 and abs(centre["y"] - y) < 2e-3
    # The zoom keys take one level a press, and the new level is a step Back undoes.
    browser.find_element("id", "map").send_keys("+")
    wait_for(browser, f"map.getZoom() === 4 && {HASH}.z === '4'")  # the step is taken once the zoom ends
    browser.back()
    wait_for(browser, f"map.getZoom() === 3 && {HASH}.frame === '{other.pk}:{number}'")


@pytest.mark.django_db
def test_search_finds_a_file_by_name_or_folder_and_opens_it_with_its_folder_and_metadata(browser, page, client):
    from selenium.webdriver.common.keys import Keys

    url, collection, sources = page
    other = sources["other.mp4"]
    # The API: by name, by folder, ignoring case.
    found = get_json(client, f"/api/sources/?collection={collection.pk}&search=OTHER")["results"]
    assert [s["id"] for s in found] == [other.pk]
    folder = other.path.rsplit("/", 1)[0]
    by_folder = get_json(client, f"/api/sources/?collection={collection.pk}&search={folder.rsplit('/', 1)[1]}")
    assert by_folder["count"] == 3
    open_map(browser, url)
    box = browser.find_element("id", "find-source")
    box.send_keys("<b>nothing")
    # Nothing found is said in the list's status line, and what was typed stays text, never markup.
    wait_for(browser, "!document.getElementById('find-status').hidden"
                      " && document.getElementById('find-status').textContent.includes('<b>nothing')")
    assert not browser.find_elements("css selector", ".find-popup b")
    assert browser.find_element("id", "find-source").get_attribute("aria-expanded") == "false"
    box.clear()
    box.send_keys("oth")
    wait_for(browser, "document.querySelectorAll('#find-results [role=option]').length === 1")
    option = browser.find_element("css selector", "#find-results [role=option]")
    assert option.find_element("css selector", ".name").text == "other.mp4"
    assert option.find_element("css selector", ".folder").text == folder
    assert box.get_attribute("aria-expanded") == "true"
    assert box.get_attribute("aria-activedescendant") == option.get_attribute("id")
    steps = browser.execute_script("return history.length")
    before = browser.execute_script(f"return {HASH}")
    box.send_keys(Keys.ENTER)
    wait_for(browser, f"document.querySelector('#selection h2')?.textContent === 'other.mp4' && {HASH}.frame")
    first, (x, y) = frame_of(client, collection, other)
    assert browser.execute_script(f"return {HASH}.frame") == f"{other.pk}:{first}"
    assert browser.execute_script("return history.length") == steps + 1  # the jump is one step
    browser.back()  # back to the view before the search, the panel closed
    wait_for(browser, f"{HASH}.z === '{before['z']}' && !{HASH}.frame && document.getElementById('panel').hidden",
             message=f"{before} again")
    centre = browser.execute_script("return fromLatLng(map.getCenter())")
    assert abs(centre["x"] - float(before["x"])) < 2e-3 and abs(centre["y"] - float(before["y"])) < 2e-3
    browser.forward()
    # The panel shown again with the file's folder (its content from before Back stays in the hidden panel).
    wait_for(browser, f"{HASH}.frame === '{other.pk}:{first}' && !document.getElementById('panel').hidden "
                      "&& document.querySelector('#selection dd.folder')?.textContent")
    assert browser.execute_script(f"return map.getBounds().contains(toLatLng({x}, {y}))")
    # The panel: the folder, the file's name with a copy button, and what the media is.
    assert browser.find_element("css selector", "#selection dd.folder").text == folder
    facts = browser.find_element("css selector", "#selection dd.facts").text
    assert f"{other.width}×{other.height}" in facts and f"{round(other.fps, 2):g} fps" in facts, facts
    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": url.split("/collections")[0], "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    browser.find_element("css selector", "#selection button.copy").click()
    wait_for(browser, "document.querySelector('#selection .copied').textContent === 'copied'")
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
    assert copied == other.path
    browser.save_screenshot(str(SCREENSHOTS / "map-search.png"))


@pytest.mark.django_db
def test_the_videos_path_has_a_direction_and_similar_paths_wait_for_a_hover(browser, page, client):
    from selenium.webdriver.common.action_chains import ActionChains

    url, collection, sources = page
    original = open_a_frame_of_the_original(browser, page, client)
    roles = "overlays.getLayers().map((l) => l.options.role)"
    wait_for(browser, f"{roles}.includes('video-start')")
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={original.pk}")["points"]
    # The video's path runs from cyan (its first frame) to pink (its last), with arrows that point
    # along it; no similar clip's path is drawn until its entry is pointed at.
    segments = browser.execute_script(
        "return overlays.getLayers().filter((l) => l.options.role === 'video-time').map((l) => l.options.color)")
    reds = [int(colour[4:-1].split(",")[0]) for colour in segments]
    assert len(segments) >= 2 and reds == sorted(reds) and reds[0] < 128 < reds[-1]
    start = browser.execute_script("return fromLatLng(overlays.getLayers().find((l) => l.options.role === "
                                   "'video-start').getLatLng())")
    assert abs(start["x"] - path[0][0]) < 1e-4 and abs(start["y"] - path[0][1]) < 1e-4
    assert browser.execute_script(f"return {roles}.filter((r) => r === 'arrow').length") >= 1
    clip_lines = "overlays.getLayers().filter((l) => l.options.role === 'clip')"
    assert browser.execute_script(f"return {clip_lines}.length") == 0
    entries = browser.find_elements("css selector", "#clips li.clip")
    ActionChains(browser).move_to_element(entries[1]).perform()
    wait_for(browser, f"{clip_lines}.length === 1")
    source = browser.execute_script(f"return {clip_lines}[0].options.source")
    assert source == int(entries[1].get_attribute("data-source"))
    ActionChains(browser).move_to_element(browser.find_element("id", "find-source")).perform()
    wait_for(browser, f"{clip_lines}.length === 0")
    entries[0].find_element("css selector", "button").send_keys("")  # the keyboard's focus shows it too
    wait_for(browser, f"{clip_lines}.length === 1")
    browser.find_element("id", "all-paths").click()
    wait_for(browser, f"{clip_lines}.length === {len(entries)}")
    browser.save_screenshot(str(SCREENSHOTS / "map-paths.png"))
    browser.find_element("id", "all-paths").click()  # back as it was, for the next tests
    wait_for(browser, f"{clip_lines}.length <= 1")
    # Playing a listed clip of another video: the heading, its times and the file follow it.
    clip = next(entry for entry in entries if int(entry.get_attribute("data-source")) != original.pk)
    name = clip.find_element("css selector", ".name").text
    clip.find_element("css selector", "button").click()
    played = int(clip.get_attribute("data-source"))
    file_name = next(path for path, s in sources.items() if s.pk == played)
    wait_for(browser, f"document.getElementById('playing').textContent === '{file_name}' && "
                      f"document.querySelector('#selection dd.name')?.textContent.startsWith('{file_name}')")
    assert name.split(" · ")[1] in browser.find_element("css selector", "#selection .when").text


# Every control a person can use: an accessible name (its text, aria-label, title or label).
UNNAMED = """return [...document.querySelectorAll(
  'button, a[href], input, select, textarea, [role=option], [role=button], video')].filter((e) => {
  if (!e.offsetParent && e.tagName !== 'VIDEO') return false;  // not shown
  const label = e.id && document.querySelector(`label[for="${e.id}"]`);
  const name = e.getAttribute('aria-label') || e.getAttribute('title') || e.textContent.trim()
    || (label && label.textContent.trim()) || (e.closest('label') && e.closest('label').textContent.trim())
    || e.getAttribute('aria-labelledby');
  return !name;
}).map((e) => e.outerHTML.slice(0, 160))"""


@pytest.mark.django_db
def test_every_control_is_labelled_and_the_keyboard_reaches_it(browser, page, client):
    from selenium.webdriver.common.keys import Keys

    open_a_frame_of_the_original(browser, page, client)
    assert browser.execute_script(UNNAMED) == []
    # Tab from the page's start reaches the toolbar, the map, its controls and the panel's buttons.
    browser.execute_script("document.activeElement.blur(); window.focus()")
    reached = set()
    body = browser.find_element("tag name", "body")
    body.send_keys(Keys.TAB)
    for _ in range(60):
        reached.add(browser.execute_script(
            "const e = document.activeElement; return e.id || e.getAttribute('aria-label') || e.textContent.trim()"))
        browser.switch_to.active_element.send_keys(Keys.TAB)
    for wanted in ("find-source", "map", "show-clusters", "export-poster", "Zoom in", "Zoom out", "other-videos",
                   "all-paths"):
        assert any(wanted in (name or "") for name in reached), (wanted, sorted(filter(None, reached)))
    assert any(name and name.startswith("play ") for name in reached)
    browser.execute_script("document.getElementById('export-poster').click()")
    wait_for(browser, "document.querySelectorAll('#poster-grid img').length > 0")
    assert browser.execute_script(UNNAMED) == []


@pytest.mark.django_db
def test_the_poster_window_stays_in_sight_beside_the_panel(browser, page):
    url, _, _ = page
    open_map(browser, url)
    browser.execute_script("map.setZoom(map.getZoom() + 1, { animate: false })")
    browser.find_element("id", "export-poster").click()
    wait_for(browser, "document.querySelectorAll('#poster-grid img').length > 0 && !!posterWindow")
    time.sleep(0.5)
    inside = ("(() => { const m = document.getElementById('map').getBoundingClientRect();"
              " const w = posterWindow.getElement().getBoundingClientRect();"
              " return [w.left >= m.left - 1 && w.right <= m.right + 1 && w.top >= m.top - 1"
              " && w.bottom <= m.bottom + 1, [w.left, w.right, w.top, w.bottom],"
              " [m.left, m.right, m.top, m.bottom]]; })()")
    assert browser.execute_script(f"return {inside}")[0], browser.execute_script(f"return {inside}")
    # The posters read as a list of their own, under a heading that names it.
    assert browser.execute_script("return document.getElementById('posters').tagName") == "UL"
    wait_for(browser, "document.getElementById('poster-list-title').textContent.includes('none yet')"
                      " || document.querySelectorAll('#posters li').length > 0")
    assert browser.find_element("id", "poster-list").get_attribute("aria-labelledby") == "poster-list-title"
    browser.save_screenshot(str(SCREENSHOTS / "map-poster-window.png"))


@pytest.mark.django_db
def test_a_first_visit_gets_a_three_hint_tour_dismissed_for_good(browser, page):
    url, _, _ = page
    browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": browser.tour_seen})
    try:
        open_map(browser, url)
        browser.execute_script("localStorage.removeItem('explorer.tour.done')")
        open_map(browser, url)
        wait_for(browser, "document.querySelector('#tour h2')?.textContent.includes('1 of 3')")
        titles = []
        for _ in range(3):
            titles.append(browser.find_element("css selector", "#tour h2").text)
            browser.find_element("css selector", "#tour button.next").click()
        assert [t.split(" (")[0] for t in titles] == ["Zoom", "Click a frame", "Similar clips"]
        wait_for(browser, "!document.getElementById('tour')")
        assert browser.execute_script("return localStorage.getItem('explorer.tour.done')") == "1"
        open_map(browser, url)
        time.sleep(1)
        assert not browser.find_elements("id", "tour")
    finally:
        skip_tour(browser)


def grown_thumbnail(client, collection, source, deepest):
    """A zoom at which a frame of `source` is drawn larger than its cell: the zoom, the box its
    thumbnail fills (map coordinates) and the width of a cell there."""
    points = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={source.pk}")["points"]
    for zoom in range(deepest - 1, 0, -1):
        cell = 2 / (4 << min(zoom, deepest - 2))
        for x, y in points:
            box = get_json(client, f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}&zoom={zoom}")["box"]
            if box[2] - box[0] > 1.5 * cell:
                return zoom, box, cell
    pytest.fail("no thumbnail grew past its cell")


@pytest.mark.django_db
def test_thumbnails_fill_their_cells_at_the_deepest_zoom_and_are_crisp_on_a_high_dpi_screen(browser, page, client):
    from tests.test_map_serving import hover_centre

    url, collection, sources = page
    state = get_json(client, f"/api/collections/{collection.pk}/map/")
    _, (x, y) = frame_of(client, collection, sources["other.mp4"], 4)
    deepest = state["max_zoom"]
    box = ("(() => { const r = hover.box.getElement().getBoundingClientRect(); return [r.width, r.height]; })()")
    for ratio in (1, 2):
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1400, "height": 900, "deviceScaleFactor": ratio, "mobile": False})
        try:
            open_map(browser, f"{url}#z={deepest}&x={x}&y={y}")
            hover_centre(browser, browser.find_element("id", "map"))
            # The thumbnail under the pointer is outlined where it is drawn: the whole 256x144 cell.
            width, height = browser.execute_script(f"return {box}")
            assert abs(width - 256) <= 2 and abs(height - 144) <= 2, (width, height)
            if ratio == 1:  # higher up, a frame with room around it is drawn (and outlined) past its cell
                zoom, (x0, y0, x1, y1), cell = grown_thumbnail(client, collection, sources["other.mp4"], deepest)
                open_map(browser, f"{url}#z={zoom}&x={(x0 + x1) / 2}&y={(y0 + y1) / 2}")
                hover_centre(browser, browser.find_element("id", "map"))
                width, height = browser.execute_script(f"return {box}")
                pixels = 256 * 2 ** zoom / 2  # per map unit, across
                assert abs(width - (x1 - x0) * pixels) <= 2 and width > 1.5 * cell * pixels, (width, cell, zoom)
                browser.save_screenshot(str(SCREENSHOTS / "map-grown.png"))
            tiles = browser.execute_script("return [...document.querySelectorAll('img.leaflet-tile-loaded')]"
                                           ".map((img) => [img.src, img.naturalWidth, img.naturalHeight])")
            assert tiles and all((w, h) == (256 * ratio, 144 * ratio) for _, w, h in tiles), tiles
            assert all(src.endswith("@2x.jpg") == (ratio == 2) for src, _, _ in tiles)
            browser.save_screenshot(str(SCREENSHOTS / f"map-deepest-{ratio}x.png"))
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
