"""Posters end to end: the API and `manage.py poster`, rendered by the real worker from a
collection ingested once for the module: a video whose frames show their own number, a
second video, and a photo."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from explorer.jobs import start_ingest
from explorer.models import Collection, Job, Poster
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import ffmpeg, make_video
from tests.test_posters import grey_of, numbered_video
from workers.pipeline.arrays import open_array
from workers.pipeline.images import letterbox
from workers.pipeline.posters import BACKGROUND, PosterSpec, cell_bounds

@pytest.fixture
def mapped(worker, media_root):
    folder = media_root / "posters"
    numbered_video(folder / "numbered.mp4")
    make_video(folder / "other.mp4", seconds=2, source="mandelbrot")
    ffmpeg("-f", "lavfi", "-i", "smptebars=size=400x300", "-frames:v", 1, folder / "photo.png")
    collection = Collection.objects.create(name="posters", sampling=sampling_params(every=10).as_dict())
    job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
    collection.refresh_from_db()
    return collection, {s.path.rsplit("/", 1)[1]: s for s in collection.sources.all()}


def whole_map(collection, **changes):
    return {"collection": collection.pk, "centre_x": 0.0, "centre_y": 0.0, "window_width": 2.2, "columns": 5,
            "rows": 4, "tile_width": 107, "tile_height": 60, **changes}


def read_image(path):
    import pyvips

    image = pyvips.Image.new_from_file(str(path))
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


def render(client, params):
    response = client.post("/api/posters/", params, content_type="application/json")
    assert response.status_code == 202, response.content
    poster = Poster.objects.get(pk=response.json()["id"])
    job = wait_for_job(poster.job, timeout=120)
    poster.refresh_from_db()
    return poster, job


def cells_of(poster):
    """{(row, column): map row} as the plan says, and the frame of each map row."""
    spec = PosterSpec.from_dict(poster.params)
    from workers.pipeline.map_versions import MapSnapshot
    from workers.pipeline.posters import assign_frames

    snapshot = MapSnapshot(poster.collection.maps_dir / poster.map_version, poster.collection.sources_dir)
    return spec, assign_frames(spec, snapshot.layout), snapshot


@pytest.mark.django_db
def test_impossible_posters_get_400_with_the_reason(client, settings):
    collection = Collection.objects.create(name="no map yet")

    def refused(**changes):
        response = client.post("/api/posters/", whole_map(collection, **changes), content_type="application/json")
        assert response.status_code == 400, response.content
        return str(response.json())

    # Each field on its own, as the schema states it; then what the fields make together.
    assert "'columns': ['Ensure this value is greater than or equal to 1.']" in refused(columns=0)
    assert "'format': ['\"gif\" is not a valid choice.']" in refused(format="gif")
    assert "'centre_y': ['A valid number is required.']" in refused(centre_y="0.5")
    assert "lies outside the map" in refused(centre_x=5.0, window_width=1.0)
    # A poster over the cell cap, planned or rendered: refused before any frame is assigned.
    for url in ("/api/posters/", "/api/posters/plan/"):
        response = client.post(url, whole_map(collection, columns=2000, rows=2000), content_type="application/json")
        assert response.status_code == 400
        assert "2000 x 2000 cells is more than the limit of 40,000 (POSTER_MAX_CELLS)" in str(response.json())
    assert "A valid number is required" in refused(centre_y="middle")
    settings.POSTER_MAX_PIXELS = 1000
    assert "535 x 240 pixels is more than the limit of 1,000 (POSTER_MAX_PIXELS)" in refused()
    assert client.post("/api/posters/", {**whole_map(collection), "collection": 999999},
                       content_type="application/json").status_code == 404
    settings.POSTER_MAX_PIXELS = 10**9
    no_map = client.post("/api/posters/", whole_map(collection), content_type="application/json")
    assert no_map.status_code == 409 and "has no map yet" in no_map.json()["detail"]
    assert not Poster.objects.filter(collection=collection).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_posters_end_to_end(client, mapped, tmp_path, settings, monkeypatch):
    """One ingest for all of it (a transactional test empties the database when it ends)."""
    preview_poster_shows_each_cells_frame_from_the_frame_store_once(client, mapped)
    a_large_plan_gives_the_size_and_a_bound_without_assigning_frames(client, mapped, monkeypatch)
    downloads_are_named_after_the_collection_whatever_its_name(client, mapped, settings)
    print_poster_from_the_command_line_takes_each_frame_from_its_source_at_its_time(mapped, tmp_path)
    vanished_source_leaves_its_cells_blank_with_a_warning(client, mapped)
    source_swapped_for_a_named_pipe_is_not_opened(client, mapped)


def preview_poster_shows_each_cells_frame_from_the_frame_store_once(client, mapped):
    collection, _ = mapped
    plan = client.post("/api/posters/plan/", whole_map(collection), content_type="application/json").json()
    assert (plan["width"], plan["height"]) == (535, 240) and plan["filled"] + plan["blank"] == 20
    planned = [(cell["source"], cell["frame"]) for line in plan["cells"] for cell in line if cell]
    # How many of the 20 cells the map's frames reach moves with the training (10-16 over
    # seeds 0-15, like another CPU's summation order would): the bar sits far below.
    assert len(planned) == len(set(planned)) == plan["filled"] >= 5

    empty_corner = client.post("/api/posters/", whole_map(collection, centre_x=0.97, centre_y=0.97,
                                                          window_width=0.05), content_type="application/json")
    assert empty_corner.status_code == 400 and "no frame lies in this window" in empty_corner.json()["detail"]

    poster, job = render(client, whole_map(collection))
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
    assert (poster.width, poster.height, poster.cells) == (535, 240, plan["filled"])
    download = client.get(f"/posters/{poster.pk}/file")
    assert download.status_code == 200 and download["Content-Type"] == "image/png"
    assert "attachment" in download["Content-Disposition"]
    pixels = read_image(poster.file_path)
    assert pixels.shape == (240, 535, 3)
    spec, assignment, snapshot = cells_of(poster)
    xs, ys = cell_bounds(spec)
    for (row, column), map_row in np.ndenumerate(assignment):
        cell = pixels[ys[row]:ys[row + 1], xs[column]:xs[column + 1]].astype(int)
        if map_row < 0:
            assert np.abs(cell - BACKGROUND).max() == 0
            continue
        frame = snapshot.describe(map_row)
        assert plan["cells"][row][column]["frame"] == frame["frame"]
        stored = open_array(collection.sources_dir / str(frame["source"]), "frames")[frame["position"]]
        expected = letterbox(stored, cell.shape[1], cell.shape[0], BACKGROUND).astype(int)
        assert np.abs(cell - expected).mean() < 1.0, (row, column)

    # Made again from its saved parameters: the same picture.
    again = client.post(f"/api/posters/{poster.pk}/again/", content_type="application/json")
    assert again.status_code == 202
    second = Poster.objects.get(pk=again.json()["id"])
    assert wait_for_job(second.job).status == Job.Status.SUCCEEDED
    assert np.array_equal(read_image(second.file_path), pixels) and second.params == poster.params
    listed = client.get(f"/api/posters/?collection={collection.pk}").json()["results"]
    assert [p["id"] for p in listed][:2] == [second.pk, poster.pk] and listed[0]["download"]


def a_large_plan_gives_the_size_and_a_bound_without_assigning_frames(client, mapped, monkeypatch):
    """Over PLAN_PREVIEW_CELLS cells the request does not solve the assignment (whose cost
    grows fast with the cells): it answers the size and how many cells at most show a frame."""
    from explorer.poster_api import PLAN_PREVIEW_CELLS
    from workers.pipeline import posters

    collection, _ = mapped
    assigned = []
    real_assign = posters.assign_frames
    monkeypatch.setattr(posters, "assign_frames", lambda spec, xy: assigned.append(spec.columns * spec.rows)
                        or real_assign(spec, xy))
    small = client.post("/api/posters/plan/", whole_map(collection), content_type="application/json").json()
    assert small["exact"] and small["cells"] and small["preview"] is None and assigned == [20]
    large = client.post("/api/posters/plan/", whole_map(collection, columns=60, rows=48),
                        content_type="application/json")
    assert large.status_code == 200, large.content
    plan = large.json()
    assert assigned == [20] and 60 * 48 > PLAN_PREVIEW_CELLS
    assert plan["cells"] is None and not plan["exact"] and "only posters of up to 2,500 cells" in plan["preview"]
    assert (plan["width"], plan["height"], plan["cell_count"]) == (60 * 107, 48 * 60, 2880)
    frames = sum(source.frame_count for source in collection.sources.all())
    assert small["filled"] <= plan["filled"] <= frames and plan["filled"] + plan["blank"] == 2880


def downloads_are_named_after_the_collection_whatever_its_name(client, mapped, settings):
    """Line breaks, quotes and non-ASCII letters in a collection's name: the download answers,
    its Content-Disposition has exactly one file name, and that name reads back whole."""
    import email.message

    collection, _ = mapped
    poster = Poster.objects.filter(collection=collection, file_size__gt=0).first()
    original = collection.name
    try:
        for name in ["two\r\nlines", 'quoted"; filename="evil.exe', "Ünïcødé 日本 poster"]:
            Collection.objects.filter(pk=collection.pk).update(name=name)
            for accel in ("", "/protected/data/"):  # served by Django, or handed to nginx
                settings.DATA_ACCEL_REDIRECT = accel
                download = client.get(f"/posters/{poster.pk}/file")
                assert download.status_code == 200, (name, accel)
                header = download["Content-Disposition"]
                assert "\r" not in header and "\n" not in header and header.isascii()
                parsed = email.message.Message()
                parsed["Content-Disposition"] = header
                params = parsed.get_params(header="content-disposition")
                assert params[0] == ("attachment", "") and [key for key, _ in params[1:]] == ["filename"], header
                assert parsed.get_filename() == f"{name}-poster-{poster.pk}.png", header
    finally:
        settings.DATA_ACCEL_REDIRECT = ""
        Collection.objects.filter(pk=collection.pk).update(name=original)


def print_poster_from_the_command_line_takes_each_frame_from_its_source_at_its_time(mapped, tmp_path):
    collection, sources = mapped
    numbered = sources["numbered.mp4"]
    out = tmp_path / "print.png"
    result = subprocess.run(
        [sys.executable, "manage.py", "poster", collection.name, "--centre", "0,0", "--width", "2.2",
         "--grid", "5x4", "--tile", "640x360", "--quality", "print", "--out", str(out)],
        cwd=ROOT, env=worker_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3200x1440 pixels" in result.stdout
    poster = Poster.objects.filter(collection=collection).first()
    pixels = read_image(out)
    assert pixels.shape == (1440, 3200, 3)
    spec, assignment, snapshot = cells_of(poster)
    seen = 0
    for (row, column), map_row in np.ndenumerate(assignment):
        frame = snapshot.describe(map_row) if map_row >= 0 else None
        if not frame or frame["source"] != numbered.pk:
            continue
        cell = pixels[row * 360:(row + 1) * 360, column * 640:(column + 1) * 640]
        # Full resolution, exact frame: a flat grey whose level is the frame's number.
        assert abs(float(cell.mean()) - grey_of(frame["frame"])) < 2, (frame, cell.mean())
        assert cell.std() < 2
        seen += 1
    assert seen >= 3


def vanished_source_leaves_its_cells_blank_with_a_warning(client, mapped):
    collection, sources = mapped
    other = sources["other.mp4"]
    hidden = other.path + ".away"
    shutil.move(other.path, hidden)
    try:
        poster, job = render(client, whole_map(collection, quality="print", tile_width=160, tile_height=90))
    finally:
        shutil.move(hidden, other.path)
    assert job.status == Job.Status.PARTIAL
    [warning] = job.skipped
    assert warning["path"] == other.path and "no longer there" in warning["reason"]
    assert "cell(s) left blank" in warning["reason"]
    assert_cells_of_source_blank(poster, other)


def source_swapped_for_a_named_pipe_is_not_opened(client, mapped):
    """Reading a named pipe waits for a writer forever: the job would hang, heartbeating."""
    collection, sources = mapped
    other = sources["other.mp4"]
    hidden = other.path + ".away"
    shutil.move(other.path, hidden)
    os.mkfifo(other.path)
    try:
        poster, job = render(client, whole_map(collection, quality="print", tile_width=160, tile_height=90))
    finally:
        os.unlink(other.path)
        shutil.move(hidden, other.path)
    assert job.status == Job.Status.PARTIAL
    [warning] = job.skipped
    assert warning["path"] == other.path and "not a regular file (named pipe)" in warning["reason"]
    assert_cells_of_source_blank(poster, other)


def assert_cells_of_source_blank(poster, source):
    spec, assignment, snapshot = cells_of(poster)
    pixels = read_image(poster.file_path)
    xs, ys = cell_bounds(spec)
    blank = 0
    for (row, column), map_row in np.ndenumerate(assignment):
        if map_row >= 0 and snapshot.describe(map_row)["source"] == source.pk:
            assert (pixels[ys[row]:ys[row + 1], xs[column]:xs[column + 1]] == BACKGROUND).all()
            blank += 1
    assert blank > 0 and poster.cells == int((assignment >= 0).sum()) - blank
