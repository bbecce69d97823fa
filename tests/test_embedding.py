"""The embedding stages end to end (features, pca, train, layout) with a real worker
and real TensorFlow on random Xception weights, plus their pure parts."""
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from explorer.jobs import start_ingest, start_training
from explorer.models import Collection, Job, WorkItem
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import make_video
from workers.pipeline.arrays import open_array, read_manifest
from workers.pipeline.features import CROP, DIMENSIONS, XceptionFeatures, load_xception
from workers.pipeline.images import left_and_right_squares


def test_features_are_xception_of_each_half_side_by_side():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 90, 160, 3), dtype=np.uint8)
    features = XceptionFeatures("random", batch_size=2, precision="float32").transform(frames)
    assert features.shape == (5, DIMENSIONS) and features.dtype == np.float16
    describe = load_xception("random", "float32")
    left, right = left_and_right_squares(frames[3], CROP)
    expected = describe(np.stack([left, right])).reshape(-1)
    assert np.allclose(features[3], expected, rtol=2e-3, atol=2e-3)
    assert not np.allclose(features[3], features[4])




def new_collection(name):
    return Collection.objects.create(name=name, sampling=sampling_params(every=10).as_dict())


def layout_of(collection):
    index = np.asarray(open_array(collection.embedding_dir, "index"))
    return index, np.asarray(open_array(collection.embedding_dir, "layout"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_ingest_ends_with_a_layout_and_new_sources_are_placed_without_retraining(worker, media_root, tmp_path):
    folder = media_root / "embed"
    make_video(folder / "a.mp4", seconds=2)
    make_video(folder / "b.mp4", seconds=2, source="mandelbrot")
    collection = new_collection("embed")
    job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
    assert job.status == Job.Status.SUCCEEDED, (job.message, job.error)
    assert "map of 12 frame(s)" in job.message
    collection.refresh_from_db()
    assert collection.embedding["random_weights"] is True and collection.embedding["frames"] == 12
    # Features went in chunks of FEATURE_CHUNK=8 frames: 6 frames a source -> one item each.
    assert WorkItem.objects.filter(job=job, stage="features", status="done").count() == 2
    index, layout = layout_of(collection)
    assert layout.shape == (12, 2) and np.abs(layout).max() <= 1.0
    assert len(np.unique(index["source"])) == 2
    pca = open_array(collection.embedding_dir, "pca")
    assert pca.shape == (12, 256)
    model = read_manifest(collection.models_dir, "layout")

    # A new source is placed with the trained model: the old frames do not move.
    make_video(media_root / "embed-more" / "c.mp4", seconds=1, source="smptebars")
    more = wait_for_job(start_ingest(collection, [media_root / "embed-more"]), timeout=300)
    assert more.status == Job.Status.SUCCEEDED, more.error
    assert read_manifest(collection.models_dir, "layout")["version"] == model["version"]
    new_index, new_layout = layout_of(collection)
    assert len(new_layout) == 15
    # Exactly: new sources come after the old ones, and PCA vectors and codes are computed in products of
    # one shape (embed.py, autoencoder.py).
    assert np.array_equal(new_index[:12], index) and np.array_equal(new_layout[:12], layout)

    # Ingesting the same files again does no work: no chunk to describe, no array rewritten.
    stamps = {p.name: p.stat().st_mtime_ns for p in collection.embedding_dir.glob("*.bin")}
    again = wait_for_job(start_ingest(collection, [folder]), timeout=300)
    assert again.status == Job.Status.SUCCEEDED
    assert not WorkItem.objects.filter(job=again).exists()
    assert {p.name: p.stat().st_mtime_ns for p in collection.embedding_dir.glob("*.bin")} == stamps
    assert len(stamps) == 4  # index, pca, codes, layout

    # Retraining is explicit, and makes a new model from every frame.
    retrain = wait_for_job(start_training(collection), timeout=300)
    assert retrain.status == Job.Status.SUCCEEDED, retrain.error
    retrained = read_manifest(collection.models_dir, "layout")
    assert retrained["version"] != model["version"] and retrained["frames"] == 15
    collection.refresh_from_db()
    assert collection.embedding["model"] == retrained["version"]  # the map now comes from it
    assert read_manifest(collection.embedding_dir, "layout")["produced_by"]["model"] == retrained["version"]

    # The map as CSV: a row per frame with its file, time and place.
    out = tmp_path / "map.csv"
    env = worker_env()
    result = subprocess.run([sys.executable, "manage.py", "export", "embed", "--csv", str(out)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    final_index, final_layout = layout_of(collection)
    assert len(rows) == 15 and {"source", "timestamp", "x", "y"} <= set(rows[0])
    sources = dict(collection.sources.values_list("pk", "path"))
    for row, (source_id, _, when), (x, y) in zip(rows, final_index, final_layout):
        assert row["source"] == sources[source_id]
        assert float(row["timestamp"]) == pytest.approx(when, abs=1e-6)
        assert (float(row["x"]), float(row["y"])) == pytest.approx((x, y), abs=1e-6)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_missing_imagenet_weights_fail_the_job_naming_the_setting(media_root, spawn_worker, tmp_path):
    import uuid

    queue = f"noweights-{uuid.uuid4().hex[:6]}"
    # No cached weights and no way to download them (no internet here; an unroutable proxy makes sure).
    offline = {"XCEPTION_WEIGHTS": "imagenet", "KERAS_HOME": str(tmp_path / "keras"), "TASK_QUEUE": queue,
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    spawn_worker(**offline)
    video = make_video(media_root / "noweights" / "a.mp4", seconds=1)
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest", str(video), "--collection", "noweights", "--every", "10"],
        cwd=ROOT, env=worker_env(**offline), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "XCEPTION_WEIGHTS=imagenet" in result.stdout and "set it to the path of" in result.stdout
    job = Job.objects.get(collection__name="noweights")
    assert job.status == Job.Status.FAILED and job.stage == "features"
    assert Collection.objects.get(name="noweights").sources.get().status == "ready"  # sampling kept


def chunk_precisions(collection):
    """{(file name, first frame): (precision, manifest mtime)} for every feature chunk of the collection."""
    chunks = {}
    for source in collection.sources.all():
        for manifest in source.frames_dir.glob("features-*.json"):
            made = read_manifest(source.frames_dir, manifest.stem)["produced_by"]
            chunks[(Path(source.path).name, made["start"])] = (made["precision"], manifest.stat().st_mtime_ns)
    return chunks


@pytest.mark.django_db(transaction=True)
def test_a_collection_never_mixes_feature_precisions(media_root, spawn_worker):
    """Workers whose FEATURE_PRECISION differs (as auto does between CPUs with and without
    bfloat16) share a collection: a job's chunks are all made in the precision the job began
    with, auto keeps the collection's precision, and an explicit other one makes them all again."""
    import uuid

    from workers.pipeline.features import resolve_precision

    here = resolve_precision("auto", "keras")  # the tests' workers run Keras (tests/environment.py)
    first = "mixed_bfloat16" if here == "float32" else "float32"  # one that auto does not give here
    second = "float32" if first == "mixed_bfloat16" else "mixed_bfloat16"
    folder = media_root / "precision"
    make_video(folder / "a" / "a.mp4", seconds=0.5)  # 8 frames at --every 2: four chunks of FEATURE_CHUNK=2
    make_video(folder / "b" / "b.mp4", seconds=0.25, source="mandelbrot")  # 4 frames: two chunks
    make_video(folder / "c" / "c.mp4", seconds=0.25, source="smptebars")
    queues = {name: f"precision-{name}-{uuid.uuid4().hex[:6]}" for name in (first, second, "auto")}

    def worker(precision):
        return spawn_worker(TASK_QUEUE=queues[precision], FEATURE_PRECISION=precision, FEATURE_CHUNK="2")

    def ingest(name, precision):
        """`manage.py ingest` of folder `name`, its tasks sent to the worker set to `precision`."""
        return subprocess.Popen(
            [sys.executable, "manage.py", "ingest", str(folder / name), "--collection", "precision", "--every", "2"],
            cwd=ROOT, env=worker_env(TASK_QUEUE=queues[precision]), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    def finish(running):
        output = running.communicate(timeout=300)[0]
        assert running.returncode == 0, output

    # A worker set to `first` begins the features of a; one set to `second` makes the chunks.
    beginner = worker(first)
    running = ingest("a", first)
    deadline = time.monotonic() + 120
    while not WorkItem.objects.filter(job__collection__name="precision", stage="features").exists():
        assert time.monotonic() < deadline and running.poll() is None, running.communicate()[0]
        time.sleep(0.05)
    beginner.stop()  # what it held goes back to the queue (tasks are acknowledged late)
    describer = spawn_worker(TASK_QUEUE=queues[first], FEATURE_PRECISION=second, FEATURE_CHUNK="2")
    finish(running)
    collection = Collection.objects.get(name="precision")
    job = collection.jobs.get()
    assert job.params["feature_precision"] == first
    after_a = chunk_precisions(collection)
    assert len(after_a) == 4 and {precision for precision, _ in after_a.values()} == {first}
    assert f"FEATURE_PRECISION is {second} here, but job {job.pk} describes its collection in {first}" in \
        describer.log.read_text()
    assert read_manifest(collection.models_dir, "pca")["precision"] == first
    model = read_manifest(collection.models_dir, "layout")["version"]
    describer.stop()

    # auto keeps the collection's precision, though on this machine it means another.
    keeper = worker("auto")
    finish(ingest("b", "auto"))
    after_b = chunk_precisions(collection)
    assert len(after_b) == 6 and {precision for precision, _ in after_b.values()} == {first}
    assert all(after_b[chunk] == after_a[chunk] for chunk in after_a)  # a's chunks were left as they were
    assert read_manifest(collection.models_dir, "layout")["version"] == model  # placed, not retrained
    keeper.stop()

    # Set explicitly to the other precision, a worker makes every chunk again, and a new map from them.
    worker(second)
    finish(ingest("c", second))
    after_c = chunk_precisions(collection)
    assert len(after_c) == 8 and {precision for precision, _ in after_c.values()} == {second}
    assert all(after_c[chunk][1] != after_b[chunk][1] for chunk in after_b)  # written again
    assert read_manifest(collection.models_dir, "pca")["precision"] == second
    assert read_manifest(collection.models_dir, "layout")["version"] != model
    collection.refresh_from_db()
    assert collection.embedding["frames"] == 8 + 4 + 4
    assert collection.embedding["pca"] == read_manifest(collection.models_dir, "pca")["version"]


def test_the_web_process_loads_no_heavy_library():
    """Pages and the API must not pull TensorFlow and friends into the web process."""
    code = ("import django, sys; django.setup(); import explorer.urls, explorer.wsgi; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn', 'cv2', 'av', 'scipy', 'workers.tasks')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, DJANGO_SETTINGS_MODULE="explorer.settings",
                                     DJANGO_SECRET_KEY="as-deployed-" + "k" * 50))  # wsgi refuses the dev key
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
