"""What the pages say about jobs, in a real browser: the files a job failed on or passed over
by name (the first ten, then the rest behind "and N more"), a waiting map's status said
once, and PCA's share of the variance without rounding up to 100%."""
import pytest

from explorer.models import Collection, Job, Source
from tests.test_map_serving import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_job_names_its_failed_and_skipped_files_and_the_share_is_not_rounded_up(browser, web_server):
    collection = Collection.objects.create(name="files", embedding={"frames": 40, "explained_variance": 0.99962})
    job = Job.objects.create(collection=collection, status=Job.Status.PARTIAL, stage="done", progress=1.0,
                             message="1 file(s) sampled into 40 frame(s), 1 failed, 13 skipped",
                             skipped=[{"path": f"/media/note {i:02d}.txt", "reason": "not a video or photo"}
                                      for i in range(13)])
    job.sources.add(Source.objects.create(collection=collection, path="/media/bad.mp4", checksum="c", size=1,
                                          mtime=0, kind="video", status=Source.Status.FAILED,
                                          error="/media/bad.mp4: not a video"))
    browser.get(f"{web_server}/collections/{collection.pk}/")
    shown = f'.job[data-job="{job.pk}"]'
    wait_for(browser, f"document.querySelector('{shown} .files.skipped')")

    failed = browser.find_element("css selector", f"{shown} .files.failed")
    assert failed.text.splitlines() == ["1 file(s) failed:", "/media/bad.mp4: not a video"]
    skipped = browser.find_element("css selector", f"{shown} .files.skipped")
    first = skipped.find_elements("css selector", ":scope > ul > li")
    assert [li.text for li in first] == [f"/media/note {i:02d}.txt: not a video or photo" for i in range(10)]
    more = skipped.find_element("css selector", "details")
    assert more.find_element("tag name", "summary").text == "and 3 more" and not more.get_attribute("open")
    more.find_element("tag name", "summary").click()
    rest = wait_for(browser, f"[...document.querySelectorAll('{shown} details li')].map((li) => li.textContent)")
    assert rest == [f"/media/note {i:02d}.txt: not a video or photo" for i in range(10, 13)]

    assert "PCA keeps more than 99.9% of the variance" in browser.find_element("id", "jobs").text


def test_a_map_being_made_says_its_status_once(browser, web_server):
    collection = Collection.objects.create(name="waiting")
    job = Job.objects.create(collection=collection, stage="features", status=Job.Status.RUNNING, progress=0.4,
                             message="3 of 8 feature chunk(s) done")
    browser.get(f"{web_server}/collections/{collection.pk}/map/")
    wait_for(browser, f"document.querySelector('#waiting .job[data-job=\"{job.pk}\"]')")
    page = browser.find_element("tag name", "main").text
    assert page.count("3 of 8 feature chunk(s) done") == 1, page
    assert browser.find_element("css selector", "#waiting .reason").text == "No map yet: it is being made."
    assert browser.find_element("id", "map-status").text == ""
