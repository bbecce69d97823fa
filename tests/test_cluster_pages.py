"""The cluster pages in a real browser, on the collection the module's fixture ingested (its
ingest ends with the cluster stage): a cluster's gallery names the cluster, selects members
(click, shift-click, a dragged box) and relabels them, and the labels land on those frames
and no others; the map's Clusters toggle draws the clusters with their chips, which open the
galleries. And a viewer may look but not label."""
import pytest

from explorer.models import FrameLabel
from tests.conftest import SCREENSHOTS
from tests.test_map_serving import get_json, wait_for

pytestmark = pytest.mark.worker

CLUSTER_NAME = "scene <i>A</i>"  # HTML in a label stays text
OTHER_NAME = "scene B"
NOTHING_RAN = "window.xss === undefined && document.querySelectorAll('main i').length === 0"


@pytest.mark.django_db
def test_a_viewer_sees_the_gallery_but_may_not_label(viewer_client, map_collection):
    collection, sources = map_collection
    page = viewer_client.get(f"/collections/{collection.pk}/clusters/0/")
    assert page.status_code == 200 and b'data-role="viewer"' in page.content
    assert viewer_client.get(f"/api/collections/{collection.pk}/clusters/0/").status_code == 200
    source = sources["other.mp4"]
    for path, body in ((f"/api/collections/{collection.pk}/labels/", {"label": "no", "cluster": 0}),
                       (f"/api/collections/{collection.pk}/labels/", {"label": "no", "frames": [[source.pk, 0]]}),
                       (f"/api/collections/{collection.pk}/labels/undo/", {}),
                       (f"/api/collections/{collection.pk}/clusters/merge/", {"clusters": [0, 1]})):
        response = viewer_client.post(path, body, content_type="application/json")
        assert response.status_code == 403, (path, response.content[:300])
    assert not FrameLabel.objects.filter(collection=collection).exists()


def chips(browser):
    """The label chip of each thumbnail on the page, in order ("" where none)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#grid .member')].map((m) => m.querySelector('.chip')?.textContent || '')")


def selected(browser):
    return browser.execute_script(
        "return [...document.querySelectorAll('#grid .member')].map((m) => m.getAttribute('aria-selected') === 'true')")


# Last in the module: a transactional test empties the database when it ends (the browser's
# labels are written by the web server, which a test's open transaction would hold up).
@pytest.mark.django_db(transaction=True)
def test_name_a_cluster_relabel_two_members_and_see_it_on_the_map(browser, web_server, map_collection, client):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.keys import Keys

    collection, _ = map_collection
    collection.refresh_from_db()
    assert collection.clustering_id, "the ingest's cluster stage grouped the map"
    api = f"/api/collections/{collection.pk}/clusters/"
    everything = get_json(client, api)
    assert everything["clustering"]["id"] == collection.clustering_id and everything["clusters"]
    members = get_json(client, f"{api}0/?page_size=200")["members"]
    cluster_frames = [(m["frame"]["source"], m["frame"]["frame"]) for m in members]
    assert len(cluster_frames) == everything["clusters"][0]["size"] >= 4

    browser.get(f"{web_server}/collections/{collection.pk}/clusters/0/")
    wait_for(browser, "document.querySelectorAll('#grid .member img').length > 0")
    shown = min(60, len(cluster_frames))
    assert len(browser.find_elements("css selector", "#grid .member")) == shown
    assert browser.find_element("id", "cluster-label").text == "unnamed"
    assert f"{len(cluster_frames)} frame(s)" in browser.find_element("id", "cluster-facts").text
    assert browser.find_element("id", "page-of").text.startswith(f"page 1 of {-(-len(cluster_frames) // 60)}")
    assert chips(browser) == [""] * shown

    # Name the cluster: every member takes the name.
    browser.find_element("id", "label-name").send_keys(CLUSTER_NAME)
    browser.find_element("id", "name-cluster").click()
    wait_for(browser, f"document.getElementById('cluster-label').textContent === {CLUSTER_NAME!r}")
    wait_for(browser, "[...document.querySelectorAll('#grid .member .chip')].length === %d" % shown)
    assert chips(browser) == [CLUSTER_NAME] * shown
    assert "Done: labelled cluster 0" in browser.find_element("id", "note").text
    assert browser.execute_script(f"return {NOTHING_RAN}")

    # Select two members: a click, then a shift-click on the next one (the range of two).
    items = browser.find_elements("css selector", "#grid .member")
    items[0].click()
    assert browser.find_element("id", "selected-count").text == "1 selected"
    ActionChains(browser).key_down(Keys.SHIFT).click(items[1]).key_up(Keys.SHIFT).perform()
    assert browser.find_element("id", "selected-count").text == "2 selected"
    assert selected(browser) == [True, True] + [False] * (shown - 2)
    assert "selected" in items[0].get_attribute("class")
    assert items[0].find_element("css selector", ".check").is_displayed()
    assert not items[2].find_element("css selector", ".check").is_displayed()

    # Relabel them.
    name = browser.find_element("id", "label-name")
    name.clear()
    name.send_keys(OTHER_NAME)
    browser.find_element("id", "label-selected").click()
    wait_for(browser, "document.querySelector('#grid .member .chip')?.textContent === %r" % OTHER_NAME)
    assert chips(browser) == [OTHER_NAME] * 2 + [CLUSTER_NAME] * (shown - 2)
    assert browser.find_element("id", "selected-count").text == "0 selected"
    assert browser.find_element("id", "cluster-label").text == CLUSTER_NAME  # still most of its members'
    recent = browser.find_element("id", "recent-actions").text
    assert "labelled 2 frame(s) as 'scene B'" in recent and "labelled cluster 0" in recent

    # In the database: those two frames carry the new label, every other member the cluster's name.
    labels = {(source, frame): name for source, frame, name in FrameLabel.objects.filter(
        collection=collection).values_list("source_id", "frame", "label__name")}
    assert set(labels) == set(cluster_frames)
    assert [labels[key] for key in cluster_frames] == [OTHER_NAME] * 2 + [CLUSTER_NAME] * (len(cluster_frames) - 2)

    # A box dragged from the empty space left of the third thumbnail to the middle of the
    # fourth selects those two; with shift, a second box adds to them.
    def drag(start, end, shift=False):
        actions = ActionBuilder(browser)
        if shift:
            actions.key_action.key_down(Keys.SHIFT)
            actions.pointer_action.pause(0)
        actions.pointer_action.move_to_location(*start).pointer_down()
        for step in (0.3, 0.7, 1.0):
            actions.pointer_action.move_to_location(round(start[0] + (end[0] - start[0]) * step),
                                                    round(start[1] + (end[1] - start[1]) * step))
        actions.pointer_action.pointer_up()
        if shift:
            actions.key_action.pause(0).pause(0).pause(0).pause(0).pause(0).key_up(Keys.SHIFT)
        actions.perform()

    boxes = browser.execute_script("return [...document.querySelectorAll('#grid .member')].map((m) => {"
                                   " const r = m.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    third, fourth = boxes[2], boxes[3]
    assert third[1] == fourth[1], "the third and fourth thumbnails are on one row"
    drag((int(third[0]) - 4, int(third[1]) + 10), (int((fourth[0] + fourth[2]) / 2), int((fourth[1] + fourth[3]) / 2)))
    assert selected(browser)[:5] == [False, False, True, True, False]
    assert browser.find_element("id", "selected-count").text == "2 selected"
    browser.find_element("id", "select-page").click()
    assert all(selected(browser)) and browser.find_element("id", "selected-count").text == f"{shown} selected"
    browser.find_element("id", "select-clear").click()
    assert not any(selected(browser))
    drag((int(third[0]) - 4, int(third[1]) + 10), (int((fourth[0] + fourth[2]) / 2), int((fourth[1] + fourth[3]) / 2)))
    drag((int(boxes[0][0]) + 10, int(boxes[0][1]) - 4), (int(boxes[0][0]) + 20, int(boxes[0][1]) + 20), shift=True)
    assert selected(browser)[:5] == [True, False, True, True, False]
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SCREENSHOTS / "cluster-gallery.png"))
    assert browser.execute_script(f"return {NOTHING_RAN}")

    # The map with its clusters: a tinted outline each, and the chip of cluster 0 with its name.
    browser.get(f"{web_server}/collections/{collection.pk}/map/#clusters=1")
    chip = wait_for(browser, "document.querySelector('.cluster-chip[data-cluster=\"0\"]')")
    assert chip.find_element("css selector", ".name").text == CLUSTER_NAME
    assert chip.find_element("css selector", ".size").text == str(len(cluster_frames))
    toggle = browser.find_element("id", "show-clusters")
    assert toggle.get_attribute("aria-pressed") == "true"
    assert len(browser.find_elements("css selector", ".cluster-chip")) == len(everything["clusters"])
    assert browser.execute_script("return clusterLayer.getLayers().filter((l) => l instanceof L.Polygon).length") \
        == len(everything["clusters"])
    unnamed = browser.find_elements("css selector", ".cluster-chip.unnamed .name")
    assert [e.text for e in unnamed] == [f"#{c['id']}" for c in everything["clusters"][1:]]
    wait_for(browser, "[...document.querySelectorAll('img.leaflet-tile')].every((img) => img.complete)")
    browser.save_screenshot(str(SCREENSHOTS / "map-clusters.png"))
    assert browser.execute_script(f"return {NOTHING_RAN}")

    toggle.click()
    wait_for(browser, "document.querySelectorAll('.cluster-chip').length === 0")
    assert toggle.get_attribute("aria-pressed") == "false" and "clusters=1" not in browser.current_url
    toggle.click()
    chip = wait_for(browser, "document.querySelector('.cluster-chip[data-cluster=\"0\"]')")
    assert "clusters=1" in browser.current_url
    chip.click()  # opens the cluster's gallery (not the frame under it)
    wait_for(browser, f"location.pathname === '/collections/{collection.pk}/clusters/0/'")
    wait_for(browser, f"document.getElementById('cluster-label').textContent === {CLUSTER_NAME!r}")

    # Split it in two (a job, followed on the page): the numbers change, and the page says
    # where the parts went; Undo puts the grouping back.
    parts = browser.find_element("id", "split-k")
    parts.clear()
    parts.send_keys("2")
    browser.find_element("css selector", "#split-form button").click()
    note = wait_for(browser, "document.getElementById('note').textContent.includes('Cluster numbers have changed') "
                             "&& document.getElementById('note').textContent", timeout=120)
    assert note.startswith("Split cluster #0 in 2.")
    after = get_json(client, api)
    assert len(after["clusters"]) == len(everything["clusters"]) + 1
    made = [link.get_attribute("pathname") for link in browser.find_elements("css selector", "#note a")]
    numbers = [int(path.rstrip("/").rsplit("/", 1)[1]) for path in made]
    assert len(numbers) == 2  # the parts, numbered among the others by size
    assert sum(after["clusters"][n]["size"] for n in numbers) == everything["clusters"][0]["size"]
    wait_for(browser, "document.querySelectorAll('#grid .member').length > 0")
    assert browser.find_element("id", "message").text == ""
    browser.find_element("id", "undo").click()
    wait_for(browser, "document.getElementById('note').textContent.startsWith('Undone: split cluster 0 in 2.')")
    back = get_json(client, api)
    assert back["clustering"]["id"] == everything["clustering"]["id"]
    assert len(back["clusters"]) == len(everything["clusters"])
    # And an error the server gives is said on the page: nothing is left to undo but labels,
    # so undo those two, then the naming, then once more.
    for _ in range(2):
        browser.find_element("id", "undo").click()
        wait_for(browser, "!document.getElementById('undo').disabled && "
                          "document.getElementById('note').textContent.startsWith('Undone: labelled')")
    assert not FrameLabel.objects.filter(collection=collection).exists()
    browser.find_element("id", "undo").click()
    message = wait_for(browser, "document.getElementById('message').textContent")
    assert message == "there is nothing to undo"
