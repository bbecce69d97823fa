"""The colour tools end to end, on the real worker: clip GIFs through the API and
`manage.py gif` (with palette transfer), the map's hover previews, and cut-outs drawn on a
scatter poster. One small collection is ingested and mapped for the module: a moving test
pattern, and a photo of a disc on a plain background."""
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from explorer.jobs import start_ingest
from explorer.models import Collection, Gif, Job
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import ffmpeg, make_video



@pytest.mark.django_db
def test_a_collection_without_frames_has_nothing_to_cut_out_or_make_a_gif_of(client):
    empty = Collection.objects.create(name="colour: nothing yet")
    response = client.post(f"/api/collections/{empty.pk}/cutouts/", {}, content_type="application/json")
    assert response.status_code == 409 and "has no sampled frames yet" in response.json()["detail"]
    pending = empty.sources.create(path="/nowhere/clip.mp4", checksum="0" * 64, size=1, mtime=0, kind="video")
    response = client.post("/api/gifs/", {"collection": empty.pk, "source": pending.pk, "stop": 1.0},
                           content_type="application/json")
    assert response.status_code == 400 and "is pending, not sampled" in str(response.json())


def test_cut_outs_are_kept_per_sampling_of_their_frames(tmp_path):
    import json

    from workers.stages.colour import cutout_folder

    made_with = {"clusters": 4, "background": "corners", "position": True}
    (tmp_path / "frames.json").write_text(json.dumps({"produced_by": {"every": 10, "checksum": "a"}}))
    first = cutout_folder(tmp_path, made_with)
    assert first.name == "corners-4-position"
    first.mkdir(parents=True)
    (first / "0.png").write_bytes(b"a cut-out of the frames as they were")
    assert cutout_folder(tmp_path, made_with) == first and (first / "0.png").exists()
    # Sampled again (another rate): the cut-outs of the old frames go, new ones go elsewhere.
    (tmp_path / "frames.json").write_text(json.dumps({"produced_by": {"every": 5, "checksum": "a"}}))
    again = cutout_folder(tmp_path, made_with)
    assert again != first and not first.exists()


def test_hover_preview_claims_send_one_task_per_clip_and_a_few_at_once(tmp_path):
    import os

    from workers.pipeline import previews

    version = "v1"
    (tmp_path / version).mkdir()
    assert previews.preview_window(7.9, 3.0) == (2, 6.0, 9.0)
    assert previews.preview_state(tmp_path, version, "5-2") == "missing"
    assert previews.claim_preview(tmp_path, version, "5-2") == "claimed"
    assert previews.claim_preview(tmp_path, version, "5-2") == "taken"
    assert previews.preview_state(tmp_path, version, "5-2") == "pending"
    for window in range(previews.MAX_PENDING - 1):
        assert previews.claim_preview(tmp_path, version, f"6-{window}") == "claimed"
    assert previews.claim_preview(tmp_path, version, "7-0") == "busy"  # MAX_PENDING wait already
    # A claim whose task was lost goes stale: taken again, and it no longer counts.
    claim = tmp_path / version / "previews" / "pending" / "5-2"
    os.utime(claim, (0, 0))
    assert previews.preview_state(tmp_path, version, "5-2") == "missing"
    assert previews.claim_preview(tmp_path, version, "5-2") == "claimed"
    # Attempts are counted in the claim: a file that kills its worker is given up.
    assert [previews.begin_attempt(tmp_path, version, "5-2") for _ in range(3)] == [1, 2, 3]
    previews.mark_failed(tmp_path, version, "5-2", "its worker was killed 2 times making it")
    previews.release_claim(tmp_path, version, "5-2")
    assert previews.preview_state(tmp_path, version, "5-2") == "failed"
    previews.mark_failed(tmp_path, "gone", "5-2", "the map was replaced")  # no error: nothing to say it to

@pytest.fixture(scope="module")
def collection(worker, media_root, django_db_blocker):
    """The module's collection. Its tests run outside a test transaction (the database open
    to them, as to the worker, in autocommit), so the worker sees the jobs they start."""
    folder = media_root / "colour"
    make_video(folder / "pattern.mp4", seconds=3)
    ffmpeg("-f", "lavfi", "-i", "color=c=0x3050d0:size=320x240,drawbox=x=100:y=60:w=120:h=120:color=0xf0c020:t=fill",
           "-frames:v", 1, folder / "box.png")
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="colour", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        collection.refresh_from_db()
        yield collection, {source.path.rsplit("/", 1)[1]: source for source in collection.sources.all()}
        collection.delete()


def make_gif(client, **body):
    response = client.post("/api/gifs/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    gif = Gif.objects.get(pk=response.json()["id"])
    job = wait_for_job(gif.job, timeout=120)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.message)
    gif.refresh_from_db()
    return gif


def gif_frames(data):
    """Each frame of a GIF file: its RGB pixels, its own colours and its duration (ms)."""
    import io

    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        rgb = np.asarray(image.convert("RGB"))
        frames.append((rgb, np.unique(rgb.reshape(-1, 3), axis=0), image.info.get("duration")))
    return image.info.get("loop"), frames


def test_a_gif_of_a_clip_through_the_api(client, viewer_client, collection):
    collection, sources = collection
    video = sources["pattern.mp4"]
    gif = make_gif(client, collection=collection.pk, source=video.pk, start=0.5, stop=2.0, colours=8, fps=4, width=160)
    assert (gif.frames, gif.width, gif.params["seeding"]) == (6, 160, "sequential")  # 0.5, 0.75 ... 1.75 s
    assert gif.flicker is not None and gif.source_flicker is not None

    # Viewers may download it (and see it in place), but not make one.
    response = viewer_client.get(f"/api/gifs/{gif.pk}/")
    assert response.status_code == 200 and response.json()["download"] == f"/gifs/{gif.pk}/file"
    download = viewer_client.get(f"/gifs/{gif.pk}/file")
    assert download["Content-Type"] == "image/gif" and download["Content-Disposition"].startswith("attachment")
    assert viewer_client.get(f"/gifs/{gif.pk}/file?inline=1")["Content-Disposition"].startswith("inline")
    loop, frames = gif_frames(b"".join(download.streaming_content))
    assert loop == 0 and len(frames) == 6
    assert all(len(colours) <= 8 for _, colours, _ in frames)
    # A frame every 0.25 s of a 30 fps video: the first frame at or after each quarter second,
    # shown until the next one's real timestamp (in the GIF's hundredths of a second).
    times = [math.ceil(round((0.5 + 0.25 * i) * 30, 6)) / 30 for i in range(6)]
    assert [duration for *_, duration in frames][:5] == [round((b - a) * 100) * 10 for a, b in zip(times, times[1:])]
    assert frames[0][0].shape == (90, 160, 3)
    refused = viewer_client.post("/api/gifs/", {"collection": collection.pk, "source": video.pk},
                                 content_type="application/json")
    assert refused.status_code == 403


def test_impossible_gifs_get_400_with_the_reason(client, collection, settings):
    collection, sources = collection
    video, photo = sources["pattern.mp4"], sources["box.png"]
    other, _ = Collection.objects.get_or_create(name="colour: another")

    def refused(**changes):
        body = {"collection": collection.pk, "source": video.pk, "start": 0.0, "stop": 1.0, **changes}
        response = client.post("/api/gifs/", body, content_type="application/json")
        assert response.status_code == 400, response.content
        return str(response.json())

    assert "Ensure this value is greater than or equal to 2" in refused(colours=1)
    assert "Ensure this value is less than or equal to 256" in refused(colours=257)
    assert "is not a valid choice" in refused(seeding="random")
    assert "the clip 5-6 s starts past the end of" in refused(start=5.0, stop=6.0)
    assert "pattern.mp4 (3.0 s)" in refused(start=5.0, stop=6.0)
    assert "stop after it starts" in refused(start=2.0, stop=1.0)
    settings.GIF_MAX_SECONDS = 1.0
    assert "at most 1 s (GIF_MAX_SECONDS)" in refused(stop=2.5)
    assert f"has no source {video.pk}" in refused(collection=other.pk)
    other.delete()
    assert "palette_from: source" in refused(palette_from={"source": 10**9, "time": 0.0})
    assert "has no frame at 9 s" in refused(palette_from={"source": video.pk, "time": 9.0})
    assert not Gif.objects.filter(collection=collection, job__isnull=True).exists()
    # A clip asked past the end runs to the end; a photo is a GIF of one frame, whatever the times.
    gif = make_gif(client, collection=collection.pk, source=video.pk, start=2.5, stop=9.0, fps=4, colours=4)
    assert (gif.stop, gif.frames) == (3.0, 2)
    gif = make_gif(client, collection=collection.pk, source=photo.pk, start=3.0, stop=1.0, colours=4)
    assert (gif.frames, gif.start, gif.stop) == (1, 0.0, 0.0)


def test_the_gif_command_takes_the_colours_of_a_picture(collection, tmp_path):
    collection, sources = collection
    reference = np.zeros((40, 40, 3), np.uint8)
    colours = np.array([[230, 20, 20], [20, 200, 40], [30, 40, 220], [240, 240, 30]], np.uint8)
    for i, colour in enumerate(colours):
        reference[(i // 2) * 20:(i // 2 + 1) * 20, (i % 2) * 20:(i % 2 + 1) * 20] = colour
    Image.fromarray(reference).save(tmp_path / "reference.png")
    out = tmp_path / "clip.gif"
    result = subprocess.run(
        [sys.executable, "manage.py", "gif", collection.name, "--source", str(sources["pattern.mp4"].pk),
         "--start", "0", "--stop", "1", "--colours", "4", "--fps", "3", "--width", "96",
         "--palette-image", str(tmp_path / "reference.png"), "--out", str(out)],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Flicker " in result.stdout and "the source's own" in result.stdout
    _, frames = gif_frames(out.read_bytes())
    assert len(frames) == 3
    for _, used, _ in frames:  # every colour of every frame is one of the picture's
        assert np.abs(used[:, None, :].astype(int) - colours[None].astype(int)).sum(axis=2).min(axis=1).max() <= 6

    refused = subprocess.run([sys.executable, "manage.py", "gif", collection.name, "--source", "999999"],
                             cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "has no source 999999" in refused.stderr


def test_hover_previews_are_made_once_by_a_worker_and_kept(client, viewer_client, collection):
    collection, sources = collection
    state = client.get(f"/api/collections/{collection.pk}/map/").json()
    source = sources["pattern.mp4"].pk
    path = client.get(f"/api/collections/{collection.pk}/map/path/?source={source}").json()
    middle = path["frames"][len(path["frames"]) // 2]
    row = client.get(f"/api/collections/{collection.pk}/map/frame/?source={source}&frame={middle}").json()["row"]
    url = f"/collections/{collection.pk}/previews/{state['version']}/{row}.gif"
    first = viewer_client.get(url)  # a viewer may look: the worker makes it
    assert first.status_code == 202 and first["Retry-After"] == "1"
    deadline = time.monotonic() + 60
    while (response := viewer_client.get(url)).status_code == 202:
        assert time.monotonic() < deadline, "the preview was not made"
        time.sleep(0.3)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif", response.content
    assert "immutable" in response["Cache-Control"]
    _, frames = gif_frames(b"".join(response.streaming_content))
    assert len(frames) > 3 and frames[0][0].shape[1] == 192  # PREVIEW width; several frames a second
    assert client.get(f"/collections/{collection.pk}/previews/{state['version']}/999999.gif").status_code == 404
    assert client.get(f"/collections/{collection.pk}/previews/nosuchversion/{row}.gif").status_code == 404



def test_cut_outs_then_a_scatter_poster_of_them(client, viewer_client, collection):
    from tests.test_poster_jobs import read_image, render
    from workers.pipeline.cutouts import read_cutout
    from workers.stages.colour import cutout_folder

    collection, sources = collection
    photo = sources["box.png"]
    assert viewer_client.post(f"/api/collections/{collection.pk}/cutouts/", {},
                              content_type="application/json").status_code == 403
    response = client.post(f"/api/collections/{collection.pk}/cutouts/", {"clusters": 3},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]), timeout=120)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.message)
    frames = sum(source.frame_count for source in sources.values())
    assert job.message == f"{frames} frame(s) cut out"
    # The photo's box stays, its plain blue background is gone (the frame store letterboxes
    # the 4:3 photo into 16:9: the bars go too).
    made_with = {"clusters": 3, "background": "corners", "position": False}
    cutout = read_cutout(cutout_folder(photo.frames_dir, made_with) / "0.png")
    assert cutout_folder(photo.frames_dir, made_with).name == "corners-3"
    assert cutout.shape[2] == 4
    opaque = cutout[..., 3] > 0
    assert opaque.any() and not opaque.all()
    assert np.abs(cutout[opaque][:, :3].astype(int) - [240, 192, 32]).max(axis=1).mean() < 20  # the yellow box

    # A scatter poster of the whole map on a transparent background, through the API: planned, then made.
    params = {"collection": collection.pk, "centre_x": 0.0, "centre_y": 0.0, "window_width": 2.4, "columns": 4,
              "rows": 4, "tile_width": 80, "tile_height": 45, "mode": "scatter", "overlap": 1.0,
              "background": "transparent"}
    plan = client.post("/api/posters/plan/", params, content_type="application/json").json()
    assert plan["filled"] == frames and plan["cells"] is None and plan["preview"].startswith("scatter: the cut-outs")
    poster, job = render(client, params)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.message)
    image = read_image(poster.file_path)
    assert image.shape == (180, 320, 4)
    alpha = image[..., 3]
    assert (alpha == 0).mean() > 0.5  # cut-outs on nothing
    yellow = (alpha == 255) & (np.abs(image[..., :3].astype(int) - [240, 192, 32]).max(axis=2) < 30)
    assert yellow.sum() > 50  # the photo's box, without its background
    assert 1 <= poster.cells <= frames
    refused = client.post("/api/posters/", {"collection": collection.pk, "centre_x": 0.0, "centre_y": 0.0,
                                            "window_width": 2.0, "columns": 2, "rows": 2, "format": "pdf",
                                            "mode": "scatter", "background": "transparent"},
                          content_type="application/json")
    assert refused.status_code == 400 and "cannot be transparent" in str(refused.json())

def test_the_map_plays_a_hover_preview_and_makes_a_gif_in_the_browser(browser, web_server, client, collection):
    from selenium.webdriver.common.action_chains import ActionChains

    from tests.conftest import SCREENSHOTS
    from tests.test_map_serving import hover_centre, wait_for

    collection, sources = collection
    source = sources["pattern.mp4"].pk
    state = client.get(f"/api/collections/{collection.pk}/map/").json()
    path = client.get(f"/api/collections/{collection.pk}/map/path/?source={source}").json()
    x, y = path["points"][len(path["points"]) // 2]
    zoom = state["max_zoom"] - 2
    browser.get(f"{web_server}/collections/{collection.pk}/map/#z={zoom}&x={x}&y={y}")
    browser.refresh()  # a new hash alone does not reload the page
    wait_for(browser, "document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    map_element = browser.find_element("id", "map")
    # The pointer rests on the frame: after half a second its clip plays in the tooltip.
    hover_centre(browser, map_element)
    wait_for(browser, "document.querySelector('.frame-tooltip .preview img')?.naturalWidth === 192", timeout=60,
             message="no hover preview played")
    browser.save_screenshot(str(SCREENSHOTS / "map-hover-preview.png"))

    # The panel's GIF button: a GIF of the clip, made by the worker, shown with its flicker.
    ActionChains(browser).click().perform()
    wait_for(browser, "!document.getElementById('panel').hidden")
    browser.find_element("css selector", ".gif-tools summary").click()
    browser.find_element("css selector", ".gif-tools select[name=colours] option[value='8']").click()
    browser.find_element("css selector", ".gif-tools button[type=submit]").click()
    wait_for(browser, "document.querySelector('.gif-result img')?.naturalWidth > 0", timeout=120,
             message="the GIF was not shown")
    summary = browser.find_element("css selector", ".gif-result .when").text
    assert "flicker" in summary and "the video's own" in summary
    gif = Gif.objects.filter(collection=collection).first()
    assert gif.params["colours"] == 8 and gif.source_id == source
    assert browser.find_element("css selector", ".gif-result a").get_attribute("href").endswith(f"/gifs/{gif.pk}/file")
    browser.save_screenshot(str(SCREENSHOTS / "map-gif.png"))
