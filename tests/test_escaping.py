"""Nothing a user names runs as code: a file and a collection named as HTML with script in
it, ingested for real and shown on every page of a real browser, stay text."""
import pytest

from explorer.jobs import start_ingest
from explorer.models import Collection, Job
from explorer.sampling_settings import sampling_params
from tests.conftest import wait_for_job
from tests.media import make_video
from tests.test_map_serving import clock, get_json, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FILE_NAME = "<img src=x onerror=window.xss=1>.mp4"
COLLECTION_NAME = "<script>window.xss=2</script><img src=x onerror=window.xss=3>"
# Nothing ran, and no element the names describe was made.
UNHARMED = "window.xss === undefined && document.querySelectorAll('[onerror], script:not([src])').length === 0"


def test_html_in_file_and_collection_names_is_shown_as_text(browser, web_server, worker, media_root, client):
    from selenium.webdriver.common.action_chains import ActionChains

    video = make_video(media_root / "escaping" / FILE_NAME, seconds=2)
    collection = Collection.objects.create(name=COLLECTION_NAME, sampling=sampling_params(every=10).as_dict())
    job = wait_for_job(start_ingest(collection, [video.parent]), timeout=300)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)

    browser.get(f"{web_server}/")
    wait_for(browser, f"document.querySelector('#collections tr[data-collection=\"{collection.pk}\"] a')?.textContent")
    assert browser.find_element("css selector", f'tr[data-collection="{collection.pk}"] a').text == COLLECTION_NAME
    assert browser.execute_script(f"return {UNHARMED}")

    browser.get(f"{web_server}/collections/{collection.pk}/")
    wait_for(browser, "document.querySelector('#sources .name')?.textContent")
    assert browser.find_element("css selector", "#sources .name").text == FILE_NAME
    assert browser.find_element("tag name", "h1").text.startswith(COLLECTION_NAME)
    assert browser.title.startswith(COLLECTION_NAME)
    assert browser.execute_script(f"return {UNHARMED}")

    # Hover the file's frame on the map, then click it.
    state = get_json(client, f"/api/collections/{collection.pk}/map/")
    source = collection.sources.get()
    path = get_json(client, f"/api/collections/{collection.pk}/map/path/?source={source.pk}")
    x, y = path["points"][0]
    zoom = state["max_zoom"] - 2
    hit = get_json(client, f"/api/collections/{collection.pk}/map/point/?x={x}&y={y}&zoom={zoom}")
    browser.get(f"{web_server}/collections/{collection.pk}/map/#z={zoom}&x={x}&y={y}")
    browser.refresh()
    wait_for(browser, "document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    ActionChains(browser).move_to_element(browser.find_element("id", "map")).pause(0.3).perform()
    tooltip = wait_for(browser, "document.querySelector('.frame-tooltip')?.textContent")
    assert tooltip == f"{FILE_NAME} · {clock(hit['time'])}"
    ActionChains(browser).click().perform()
    wait_for(browser, "!document.getElementById('panel').hidden && document.querySelector('#selection h2')")
    assert browser.find_element("css selector", "#selection h2").text == FILE_NAME
    # The path's tooltip names the file too: open it where the path is drawn.
    label = wait_for(browser, "(() => { const line = overlays.getLayers().find((l) => l instanceof L.Polyline);"
                              " if (!line) return null; line.openTooltip(); return line.getTooltip().getElement()"
                              "?.textContent; })()")
    assert label.startswith(FILE_NAME)
    assert browser.execute_script(f"return {UNHARMED}")
