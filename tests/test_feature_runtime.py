"""The features' two runtimes: OpenVINO (the Keras network converted) computes what Keras
computes; `auto` means what it says on this machine; the conversion is cached beside the
weights, keyed by them, and read back without TensorFlow; and a collection never mixes
runtimes. Real OpenVINO and real TensorFlow on random Xception weights, tiny inputs."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from explorer.models import Collection
from tests.conftest import ROOT, worker_env
from tests.media import make_video
from tests.test_embedding import chunk_precisions
from workers import predictor as predict_worker
from workers.pipeline import features, xception_keras, xception_openvino
from workers.pipeline.arrays import read_manifest
from workers.pipeline.features import CROP, XceptionFeatures, load_xception, resolve_precision


def lavfi_frame(source, size="320x180"):
    """One frame of an ffmpeg lavfi source as an RGB array."""
    width, height = map(int, size.split("x"))
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size={size}",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


@pytest.fixture(scope="module")
def frames():
    return np.stack([lavfi_frame(source) for source in ("testsrc2", "mandelbrot", "smptebars", "rgbtestsrc")])


@pytest.fixture(scope="module")
def crops(frames):
    from workers.pipeline.images import left_and_right_squares

    return np.stack([crop for frame in frames for crop in left_and_right_squares(frame, CROP)])


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same_features(ours, keras, min_cosine):
    """Each crop's features agree with Keras's (cosine), and closer to its own crop's than any
    other crop's are: random weights make every crop's features alike (cosines of 0.9 to
    0.99 between different crops), so a cosine alone would let a wrong network pass."""
    assert ours.dtype == np.float32 and isinstance(ours, np.ndarray) and ours.shape == keras.shape
    assert cosines(ours, keras).min() >= min_cosine, cosines(ours, keras)
    apart = np.linalg.norm(keras[:, None] - keras[None], axis=2)
    np.fill_diagonal(apart, np.inf)
    assert (np.linalg.norm(ours - keras, axis=1) < 0.1 * apart.min(axis=1)).all()


def test_openvino_computes_what_keras_computes(crops, frames, tmp_path):
    keras = load_xception("random", "float32")(crops)
    f32 = load_xception("random", "openvino-f32", models_dir=tmp_path)
    assert f32.precision == "openvino-f32"
    assert f32.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"  # not left to OpenVINO
    assert_same_features(f32(crops), keras, min_cosine=0.999)
    # One crop at a time, and more crops than the requests: the split over requests keeps the order.
    assert np.allclose(f32(crops[:1])[0], f32(crops)[0], rtol=1e-4, atol=1e-9)
    assert np.allclose(np.concatenate([f32(crops[i:i + 3]) for i in range(0, len(crops), 3)]), f32(crops),
                       rtol=1e-4, atol=1e-9)
    # The pipeline, which stores float16 side by side, gives the same through either runtime.
    through_openvino = XceptionFeatures("random", batch_size=3, precision="openvino-f32").transform(frames)
    through_keras = XceptionFeatures("random", batch_size=3, precision="float32").transform(frames)
    assert through_openvino.dtype == np.float16 and through_openvino.shape == (len(frames), 4096)
    assert cosines(through_openvino.astype(np.float32), through_keras.astype(np.float32)).min() >= 0.999
    if features.bfloat16_is_fast():  # the name means what it says where the CPU can do it
        bf16 = load_xception("random", "openvino-bf16", models_dir=tmp_path)
        assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
        assert_same_features(bf16(crops), keras, min_cosine=0.999)


def test_auto_means_openvino_in_bfloat16_where_the_cpu_has_it(monkeypatch):
    for name in features.PRECISIONS:  # an explicit name is itself, whatever the runtime
        assert resolve_precision(name, "keras") == resolve_precision(name, "openvino") == name
    assert [features.runtime_of(name) for name in features.PRECISIONS] == ["keras"] * 3 + ["openvino"] * 2
    with pytest.raises(ValueError, match="not a feature precision"):
        resolve_precision("bf16")
    with pytest.raises(ValueError, match="not a feature runtime"):
        resolve_precision("auto", "onnx")
    # On this machine, as it is.
    assert resolve_precision("auto", "openvino") == ("openvino-bf16" if features.bfloat16_is_fast() else "openvino-f32")
    assert resolve_precision("auto") == resolve_precision("auto", "openvino")  # OpenVINO is installed

    monkeypatch.setattr(features, "tensorflow_gpu_possible", lambda: False)
    monkeypatch.setattr(xception_keras, "gpu_available", lambda: False)
    for fast, openvino, keras in ((True, "openvino-bf16", "mixed_bfloat16"), (False, "openvino-f32", "float32")):
        monkeypatch.setattr(features, "bfloat16_is_fast", lambda fast=fast: fast)
        monkeypatch.setattr(xception_openvino, "available", lambda: True)
        assert resolve_precision("auto") == resolve_precision("auto", "openvino") == openvino
        assert resolve_precision("auto", "keras") == keras
        monkeypatch.setattr(xception_openvino, "available", lambda: False)  # not importable: Keras
        assert resolve_precision("auto") == keras
    monkeypatch.setattr(xception_openvino, "available", lambda: True)
    monkeypatch.setattr(features, "tensorflow_gpu_possible", lambda: True)  # TensorFlow with a GPU: Keras on it
    monkeypatch.setattr(xception_keras, "gpu_available", lambda: True)
    assert resolve_precision("auto") == "mixed_float16"


DESCRIBE = """
import json, sys
import numpy as np
from workers.pipeline.features import load_xception
network = load_xception(sys.argv[1], "openvino-f32", models_dir=sys.argv[2])
np.save(sys.argv[4], network(np.load(sys.argv[3])))
print(json.dumps({"place": str(network.place), "tensorflow": "tensorflow" in sys.modules,
                  "telemetry": sys.modules.get("openvino_telemetry") is not None}))
"""


def start_describing(weights, models_dir, crops, folder, unprivileged=False):
    """A new process that describes `crops` with openvino-f32; `finish` it."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "crops.npy", crops)
    command = [sys.executable, "-c", DESCRIBE, str(weights), str(models_dir), str(folder / "crops.npy"),
               str(folder / "out.npy")]
    if unprivileged and os.geteuid() == 0:  # root writes anywhere: without these capabilities, modes hold
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    process = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.folder = folder
    return process


def finish(process):
    """(where its IR is, whether it imported TensorFlow, the features)."""
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    answer = json.loads(out.strip().splitlines()[-1])
    assert not answer["telemetry"]  # OpenVINO's converter got its stub: it reports nothing to Intel
    return Path(answer["place"]), answer["tensorflow"], np.load(process.folder / "out.npy")


def describe_elsewhere(weights, models_dir, crops, folder, unprivileged=False):
    return finish(start_describing(weights, models_dir, crops, folder, unprivileged))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """Xception weights of another seed than `random`'s, saved as a file."""
    import keras

    folder = tmp_path_factory.mktemp("weights")
    keras.utils.set_random_seed(1)
    model = keras.applications.Xception(include_top=False, weights=None, pooling="avg", input_shape=(CROP, CROP, 3))
    path = folder / "xception.weights.h5"
    model.save_weights(path)
    yield path, hashlib.sha256(path.read_bytes()).hexdigest()
    shutil.rmtree(folder, ignore_errors=True)


def test_the_conversion_is_kept_beside_the_weights_and_read_without_tensorflow(weights_file, crops, tmp_path):
    weights, digest = weights_file
    models_dir = tmp_path / "converted"
    place, tensorflow, first = describe_elsewhere(weights, models_dir, crops[:3], tmp_path)
    assert place == weights.parent / ".openvino" / digest[:16]  # keyed by the weights' SHA-256
    assert (place / "xception.xml").is_file() and (place / "xception.bin").is_file()
    assert json.loads((place / "conversion.json").read_text())["weights"] == digest
    assert tensorflow  # it converted the Keras network
    assert not models_dir.exists() or not any(models_dir.iterdir())
    assert [p.name for p in place.parent.iterdir()] == [digest[:16]]  # no temporary folder left
    again, tensorflow, second = describe_elsewhere(weights, models_dir, crops[:3], tmp_path)
    assert again == place and not tensorflow  # read back, and TensorFlow never imported
    np.testing.assert_array_equal(first, second)
    assert_same_features(second, xception_keras.build(str(weights), "float32")(crops[:3]), min_cosine=0.999)

    # `random` has no file: its conversion goes to the models folder.
    place, _, _ = describe_elsewhere("random", models_dir, crops[:1], tmp_path)
    assert place == models_dir / "random" and (place / "xception.xml").is_file()


def test_imagenet_is_keyed_by_the_file_in_kerass_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    models_dir = tmp_path / "converted"
    assert xception_openvino.cache_places("imagenet", models_dir) == (None, [])  # not downloaded yet
    planted = Path(tempfile.gettempdir()) / ".keras" / "models" / xception_openvino.IMAGENET_FILE
    assert xception_openvino.imagenet_file() != planted  # nowhere Keras itself would not look
    cached = tmp_path / "keras" / "models" / xception_openvino.IMAGENET_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"the weights Keras downloaded")
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    assert xception_openvino.cache_places("imagenet", models_dir) == (
        digest, [cached.parent / ".openvino" / digest[:16], models_dir / digest[:16]])


def test_a_conversion_that_another_user_could_have_written_is_not_trusted(tmp_path):
    models_dir = tmp_path / "converted"
    _, place = xception_openvino.read_or_convert("random", models_dir)  # converted and cached
    assert place == models_dir / "random"
    assert xception_openvino._is_complete(place, "random")
    place.chmod(0o777)  # anyone may now swap the network inside
    assert not xception_openvino._is_complete(place, "random")
    place.chmod(0o755)
    assert xception_openvino._is_complete(place, "random")


def test_two_processes_converting_at_once_both_get_the_whole_model(crops, tmp_path):
    models_dir = tmp_path / "converted"
    both = [start_describing("random", models_dir, crops[:2], tmp_path / name) for name in ("one", "two")]
    (one, _, first), (two, _, second) = (finish(process) for process in both)
    assert one == two == models_dir / "random"
    np.testing.assert_array_equal(first, second)
    assert [p.name for p in models_dir.iterdir()] == ["random"]  # the loser's temporary folder is gone
    assert sorted(p.name for p in one.iterdir()) == ["conversion.json", "xception.bin", "xception.xml"]


def test_an_unwritable_weights_folder_sends_the_conversion_to_the_models_folder(weights_file, crops, tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: no folder can be made unwritable here")
    weights, digest = weights_file
    folder = tmp_path / "read-only"
    folder.mkdir()
    os.link(weights, folder / weights.name)
    models_dir = tmp_path / "converted"
    folder.chmod(0o555)
    try:
        place, tensorflow, _ = describe_elsewhere(folder / weights.name, models_dir, crops[:1], tmp_path,
                                                  unprivileged=True)
        assert place == models_dir / digest[:16] and (place / "xception.xml").is_file() and tensorflow
        assert sorted(p.name for p in folder.iterdir()) == [weights.name]  # nothing written beside the weights
        place, tensorflow, _ = describe_elsewhere(folder / weights.name, models_dir, crops[:1], tmp_path,
                                                  unprivileged=True)
        assert place == models_dir / digest[:16] and not tensorflow  # and found there the next time
    finally:
        folder.chmod(0o755)


def test_the_predict_worker_describes_in_the_precision_it_is_asked_for(crops, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_MODELS", {})  # the networks it loads, and only those
    server = predict_worker.Predictor(str(tmp_path / "p.sock"), "secret", "random", models_dir=tmp_path)
    started = threading.Event()
    threading.Thread(target=server.serve, kwargs={"ready": started.set}, daemon=True).start()
    assert started.wait(10)
    try:
        asked = {precision: predict_worker.describe(crops[:4], precision, server.address, "secret")
                 for precision in ("openvino-f32", "float32")}
    finally:
        server.close()
    assert_same_features(asked["openvino-f32"], asked["float32"], min_cosine=0.999)
    loaded = features._MODELS
    assert set(loaded) == {("random", "openvino-f32"), ("random", "float32")}
    assert isinstance(loaded["random", "openvino-f32"], xception_openvino.OpenVinoXception)
    assert loaded["random", "openvino-f32"].place == tmp_path / "random"


# --- a collection never mixes runtimes ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_collection_begun_with_openvino_keeps_it_until_told_otherwise(media_root, spawn_worker):
    from django.conf import settings

    queue = f"runtime-{uuid.uuid4().hex[:6]}"
    folder = media_root / "runtime"
    make_video(folder / "a" / "a.mp4", seconds=0.5)  # 8 frames at --every 2: two chunks of FEATURE_CHUNK=4
    make_video(folder / "b" / "b.mp4", seconds=0.25, source="mandelbrot")  # 4 frames: one chunk

    def ingest(path):
        result = subprocess.run(
            [sys.executable, "manage.py", "ingest", str(path), "--collection", "runtime", "--every", "2"],
            cwd=ROOT, env=worker_env(TASK_QUEUE=queue), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return Collection.objects.get(name="runtime")

    def worker(runtime, precision):
        return spawn_worker(TASK_QUEUE=queue, FEATURE_RUNTIME=runtime, FEATURE_PRECISION=precision, FEATURE_CHUNK="4")

    def state(collection):
        return read_manifest(collection.models_dir, "pca"), read_manifest(collection.models_dir, "layout")["version"]

    # A collection begun by a worker whose runtime is OpenVINO: its name everywhere.
    openvino = "openvino-bf16" if features.bfloat16_is_fast() else "openvino-f32"
    first = worker("openvino", "auto")
    collection = ingest(folder / "a")
    assert collection.jobs.get().params["feature_precision"] == openvino
    after_a = chunk_precisions(collection)
    assert len(after_a) == 2 and {precision for precision, _ in after_a.values()} == {openvino}
    pca, model = state(collection)
    assert pca["precision"] == openvino and collection.embedding["frames"] == 8
    assert (Path(settings.DATA_DIR) / "converted" / "random" / "xception.xml").is_file()  # FEATURE_MODELS_DIR
    first.stop()
    assert "compiled Xception for OpenVINO" in first.log.read_text()

    # A Keras worker left to auto keeps the collection's runtime: b is made with OpenVINO too.
    keras = worker("keras", "auto")
    collection = ingest(folder / "b")
    after_b = chunk_precisions(collection)
    assert len(after_b) == 3 and {precision for precision, _ in after_b.values()} == {openvino}
    assert all(after_b[chunk] == after_a[chunk] for chunk in after_a)  # a's chunks left as they were
    assert state(collection) == (pca, model)  # placed with the same PCA and model: nothing refitted
    assert f"FEATURE_RUNTIME is keras here, but job {collection.jobs.latest('pk').pk} describes its collection " \
           f"in {openvino}" in keras.log.read_text()
    keras.stop()
    assert "compiled Xception for OpenVINO" in keras.log.read_text()  # the name said OpenVINO, so it ran

    # Told float32, a worker makes every chunk again in it, and fits PCA and the model again.
    worker("keras", "float32")
    collection = ingest(folder)
    after = chunk_precisions(collection)
    assert set(after) == set(after_b) and {precision for precision, _ in after.values()} == {"float32"}
    assert all(after[chunk][1] != after_b[chunk][1] for chunk in after)
    refitted, retrained = state(collection)
    assert refitted["precision"] == "float32" and refitted["version"] != pca["version"] and retrained != model
    collection.refresh_from_db()
    assert collection.embedding["frames"] == 12 and collection.embedding["pca"] == refitted["version"]
    shutil.rmtree(folder, ignore_errors=True)


def test_feature_threads_caps_a_pool_processs_threads(settings, monkeypatch, tmp_path):
    from workers.worker_side import LimitThreads

    for name in ("FEATURE_THREADS", "TF_NUM_INTRAOP_THREADS"):  # put back as they were after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    settings.FEATURE_THREADS = 0
    LimitThreads(worker=None)
    assert "FEATURE_THREADS" not in os.environ and "TF_NUM_INTRAOP_THREADS" not in os.environ  # every core
    settings.FEATURE_THREADS = 1
    LimitThreads(worker=None)  # in the worker's main process, before the pool processes start
    assert os.environ["FEATURE_THREADS"] == os.environ["TF_NUM_INTRAOP_THREADS"] == "1"
    capped = xception_openvino.load("random", "openvino-f32", models_dir=tmp_path)
    assert int(capped.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
