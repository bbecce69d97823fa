"""Xception on OpenVINO: the Keras network (workers/pipeline/xception_keras.py) converted
once, cached as OpenVINO IR beside its weights, and run without TensorFlow.

The converted model is the whole tf.function: uint8 crops (batch, 299, 299, 3), any batch,
with the preprocessing (x / 127.5 - 1) inside, to (batch, 2048) float32. It is compiled for
the CPU with the inference precision set explicitly, so that a name means what it says:
`openvino-bf16` computes in bfloat16, `openvino-f32` in float32.

Where the IR lives, keyed by the SHA-256 of the weights file:
    <weights folder>/.openvino/<sha256[:16]>/xception.xml (+ .bin, conversion.json)
and when that folder cannot be written, <models_dir>/<sha256[:16]>/ (FEATURE_MODELS_DIR).
`imagenet` is the file in Keras's cache (downloaded by Keras on the first conversion);
`random`, the seeded random network, is <models_dir>/random/. A conversion is written in a
temporary folder and renamed into place, so two workers converting at once never read a half
model: the second rename fails and that worker uses the first one's. A worker that finds the
IR loads it without importing TensorFlow; only a conversion does.
"""
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from workers.pipeline.files import file_checksum

log = logging.getLogger(__name__)

PRECISIONS = {"openvino-bf16": "bf16", "openvino-f32": "f32"}  # name -> INFERENCE_PRECISION_HINT
CONVERSION = 1  # what the IR holds (input, preprocessing, output); a new value converts again
IMAGENET_FILE = "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
MODEL_FILE = "xception.xml"


class RuntimeUnavailable(Exception):
    """This worker cannot run the precision a collection's features are made in (no OpenVINO,
    or no bfloat16 on its CPU); the message says why."""


def import_openvino():
    """The openvino module. Its converter reports usage to Intel unless told otherwise
    (openvino-telemetry, on by default): the product sends nothing anywhere, so the converter
    gets its built-in stub instead (an absent openvino_telemetry makes it use the stub)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def available():
    """True when OpenVINO can be imported here."""
    try:
        import_openvino()
    except Exception:  # noqa: BLE001 - missing, or a broken install: either way Keras it is
        return False
    return True


def imagenet_file():
    """The ImageNet weights in Keras's cache, where Keras keeps them (KERAS_HOME, else ~/.keras,
    else /tmp/.keras when home is not writable), or None while they are not downloaded."""
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp", ".keras")
    path = Path(home).expanduser() / "models" / IMAGENET_FILE  # only where Keras itself looks
    return path if path.is_file() else None


def cache_places(weights, models_dir):
    """(key, [folders the IR may be in, in the order they are tried]) for `weights`; key is
    None when the weights are not there yet (imagenet before its download)."""
    if weights == "random":
        return "random", [Path(models_dir) / "random"] if models_dir else []
    path = imagenet_file() if weights == "imagenet" else Path(weights)
    if path is None:
        return None, []
    digest = file_checksum(path)
    places = [path.parent / ".openvino" / digest[:16]]
    if models_dir:
        places.append(Path(models_dir) / digest[:16])
    return digest, places


def _is_complete(folder, key):
    """Whether `folder` holds a finished conversion of `key` that only this user could have
    written: a folder another user may write to could hold any network under that name."""
    try:
        if os.name == "posix":
            owner = folder.stat()
            if owner.st_uid != os.getuid() or owner.st_mode & 0o022:
                return False
        made = json.loads((folder / "conversion.json").read_text())
    except (OSError, ValueError):
        return False
    return made.get("weights") == key and made.get("conversion") == CONVERSION and (folder / MODEL_FILE).is_file()


def _convert(weights):
    """The Keras float32 network converted to an OpenVINO model (imports TensorFlow)."""
    from workers.pipeline.xception_keras import build

    openvino = import_openvino()
    began = time.monotonic()
    keras_network = build(weights, "float32")
    model = openvino.convert_model(keras_network.function)
    log.info("converted Xception (%s) to OpenVINO in %.1f s", weights, time.monotonic() - began)
    return model


def _save(model, key, places):
    """Write the IR into the first place that can be written, atomically; the folder it is
    in then, or None when no place could be written."""
    openvino = import_openvino()
    for place in places:
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{place.name}-", dir=place.parent))
        except OSError as exc:
            log.info("cannot cache the converted Xception in %s (%s)", place.parent, exc)
            continue
        try:
            # compress_to_fp16=False: the weights stay float32, so openvino-f32 is float32 throughout.
            openvino.save_model(model, str(scratch / MODEL_FILE), compress_to_fp16=False)
            (scratch / "conversion.json").write_text(json.dumps(
                {"weights": key, "conversion": CONVERSION, "openvino": openvino.get_version()}))
            os.chmod(scratch, 0o755)  # mkdtemp's 0700 would hide it from other users' workers
            try:
                os.rename(scratch, place)
            except OSError:
                if not _is_complete(place, key):  # not another worker's finished conversion: an old one
                    shutil.rmtree(place, ignore_errors=True)
                    try:
                        os.rename(scratch, place)
                    except OSError:
                        if not _is_complete(place, key):
                            raise
            return place
        except (OSError, RuntimeError) as exc:  # RuntimeError: OpenVINO's own, writing the IR (a full disk)
            log.info("cannot cache the converted Xception in %s (%s)", place, exc)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return None


def read_or_convert(weights, models_dir=None):
    """(OpenVINO model, folder of its IR or None): the cached IR when there is one, else a
    conversion, cached in the first place that can be written."""
    openvino = import_openvino()
    key, places = cache_places(weights, models_dir)
    for place in places:
        if _is_complete(place, key):
            return openvino.Core().read_model(str(place / MODEL_FILE)), place
    model = _convert(weights)
    if key is None:  # imagenet: Keras has just downloaded the file
        key, places = cache_places(weights, models_dir)
    place = _save(model, key, places) if key else None
    if place is None:
        log.warning("the converted Xception is not cached (no folder of %s could be written): every "
                    "worker process converts it again", [str(p) for p in places])
    return model, place


class OpenVinoXception:
    """The compiled network as a callable: uint8 crops -> (batch, 2048) float32 NumPy array.

    Compiled with the throughput hint (one stream per request, each on its own cores), and
    every call splits its crops over the requests run asynchronously: measured on 2 cores
    (tests/benchmarks/bench_features.py), 1.5x faster than the latency hint's synchronous
    calls in bfloat16 in one process, and as fast or faster in float32 and as two worker
    processes at once."""

    def __init__(self, compiled, precision, place=None):
        openvino = import_openvino()
        self.compiled, self.precision, self.place = compiled, precision, place
        self.requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = openvino.AsyncInferQueue(compiled, self.requests)
        self._queue.set_callback(self._keep)
        self._lock = threading.Lock()

    @staticmethod
    def _keep(request, userdata):
        results, index = userdata
        results[index] = request.get_output_tensor(0).data.copy()

    def __call__(self, crops):
        crops = np.ascontiguousarray(crops, dtype=np.uint8)
        if not len(crops):
            return np.empty((0, 2048), np.float32)
        parts = np.array_split(crops, min(self.requests, len(crops)))
        results = [None] * len(parts)
        with self._lock:
            for index, part in enumerate(parts):
                self._queue.start_async({0: part}, (results, index))
            self._queue.wait_all()
        if any(result is None for result in results):
            raise RuntimeError("OpenVINO returned no features for part of a batch")
        return np.concatenate(results).astype(np.float32, copy=False)


def load(weights, precision, models_dir=None):
    """The OpenVinoXception of `weights` in `precision` (openvino-bf16 or openvino-f32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{precision!r} is not an OpenVINO precision ({', '.join(PRECISIONS)})")
    try:
        openvino = import_openvino()
    except ImportError as exc:
        raise RuntimeUnavailable(f"this worker cannot make {precision} features: OpenVINO is not installed "
                                 f"({exc}); install requirements.txt") from None
    core = openvino.Core()
    hint = PRECISIONS[precision]
    if hint == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise RuntimeUnavailable(f"this worker's CPU has no bfloat16, so it cannot make {precision} features as "
                                 "the collection's others were made")
    model, place = read_or_convert(weights, models_dir)
    began = time.monotonic()
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "THROUGHPUT"}
    if int(os.environ.get("FEATURE_THREADS") or 0):  # a worker pool process's share of the cores
        config["INFERENCE_NUM_THREADS"] = int(os.environ["FEATURE_THREADS"])
    compiled = core.compile_model(model, "CPU", config)
    log.info("compiled Xception for OpenVINO %s in %.2f s (IR: %s)", hint, time.monotonic() - began, place)
    return OpenVinoXception(compiled, precision, place)
