"""Stage 2, features: each frame becomes a 4096-d descriptor.

A frame gives two square crops, its left and its right square (side min(w, h)),
each resized to 299x299 (images.left_and_right_squares) and passed through Xception
(ImageNet weights, no top, global average pooling): 2 x 2048 values, stored as float16.

Two runtimes compute the same network: Keras (workers/pipeline/xception_keras.py, the
definition) and OpenVINO (workers/pipeline/xception_openvino.py, the Keras network
converted, faster on a CPU and without TensorFlow at run time). Features of one precision
of one runtime differ slightly from another's, so a collection's features are all made in
one, named by its precision: Keras's policies (float32, mixed_bfloat16, mixed_float16) or
openvino-bf16 / openvino-f32 (see resolve_precision).

Cropping and resizing run in a background thread (OpenCV releases the GIL) while the
network runs the previous batch, so the CPU's time goes to the network.
"""
import queue
import threading
from pathlib import Path

import numpy as np

from workers.pipeline import xception_keras
from workers.pipeline.images import left_and_right_squares

CROP = xception_keras.CROP
WeightsError = xception_keras.WeightsError  # the weights cannot be had (either runtime)
DIMENSIONS = 4096
OPENVINO_PRECISIONS = ("openvino-bf16", "openvino-f32")
PRECISIONS = xception_keras.KERAS_PRECISIONS + OPENVINO_PRECISIONS  # every name a collection's features may be made in
RUNTIMES = ("auto", "openvino", "keras")


def weights_identity(weights):
    """What `weights` names, for manifests: 'imagenet', 'random' or the file's SHA-256."""
    from workers.pipeline.files import file_checksum

    if weights in ("imagenet", "random"):
        return weights
    return f"sha256:{file_checksum(weights)}"


def bfloat16_is_fast():
    """True on CPUs with native bfloat16 matrix maths (AVX-512 BF16 or AMX) and no GPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def runtime_of(precision):
    """The runtime a precision name belongs to: 'openvino' or 'keras'."""
    if precision not in PRECISIONS:
        raise ValueError(f"{precision!r} is not a feature precision ({', '.join(PRECISIONS)})")
    return "openvino" if precision in OPENVINO_PRECISIONS else "keras"


def tensorflow_gpu_possible():
    """True when an NVIDIA GPU is there and TensorFlow is not the CPU build: then Keras on the
    GPU, not OpenVINO on the CPU. Looked at without importing either."""
    from importlib import metadata

    try:
        gpus = any(Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False
    try:
        metadata.version("tensorflow-cpu")
    except metadata.PackageNotFoundError:
        return gpus
    return False


def resolve_runtime(runtime):
    """The runtime `runtime` ('auto', 'openvino' or 'keras') means on this machine: auto is
    OpenVINO when it can be imported (and TensorFlow has no GPU to run on), else Keras."""
    if runtime not in RUNTIMES:
        raise ValueError(f"{runtime!r} is not a feature runtime ({', '.join(RUNTIMES)})")
    if runtime != "auto":
        return runtime
    from workers.pipeline import xception_openvino

    return "openvino" if not tensorflow_gpu_possible() and xception_openvino.available() else "keras"


def resolve_precision(precision, runtime="auto"):
    """The precision name that `precision` means on this machine; an explicit name is itself
    (it names its runtime too). 'auto' with OpenVINO (`runtime`, see resolve_runtime) is
    openvino-bf16 on a CPU with native bfloat16, openvino-f32 otherwise; with Keras,
    mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bfloat16, float32 otherwise.
    Features made in different precisions differ slightly, so what auto gives depends on the
    machine (and a collection keeps the one it began with: workers/stages/describe.py)."""
    if precision != "auto":
        runtime_of(precision)  # a known name, or ValueError
        return precision
    if resolve_runtime(runtime) == "openvino":
        return "openvino-bf16" if bfloat16_is_fast() else "openvino-f32"
    if xception_keras.gpu_available():
        return "mixed_float16"
    return "mixed_bfloat16" if bfloat16_is_fast() else "float32"


_MODELS = {}  # one network per process and configuration: loading it takes seconds


def load_xception(weights, precision="auto", runtime="auto", models_dir=None):
    """The network as a callable: uint8 batch of 299x299x3 crops -> (batch, 2048) float32 NumPy
    array, with `.precision` its name. `precision` (auto: see resolve_precision) picks the
    runtime; `models_dir` is where an OpenVINO conversion goes when the weights' folder cannot
    be written (FEATURE_MODELS_DIR)."""
    precision = resolve_precision(precision, runtime)
    key = (weights, precision)
    if key not in _MODELS:
        if runtime_of(precision) == "openvino":
            from workers.pipeline.xception_openvino import load
            _MODELS[key] = load(weights, precision, models_dir)
        else:
            _MODELS[key] = xception_keras.build(weights, precision)
    return _MODELS[key]


class XceptionFeatures:
    """Frames -> (N, 4096) float16 descriptors (left square's 2048, then right square's).

    Parameters: weights ('imagenet', 'random' or a path to an .h5 file), batch_size
    in frames (two crops each), precision ('auto', 'float32', 'openvino-bf16', ...;
    see resolve_precision), runtime (what auto means: 'auto', 'openvino' or 'keras'),
    models_dir (see load_xception).
    """

    def __init__(self, weights="imagenet", batch_size=8, precision="auto", runtime="auto", models_dir=None):
        self.weights = weights
        self.batch_size = batch_size
        self.precision = precision
        self.runtime = runtime
        self.models_dir = models_dir

    def transform(self, frames, progress=None):
        """Describe `frames` (N, H, W, 3) uint8, any array-like (a memmap is read in batches)."""
        describe = load_xception(self.weights, self.precision, self.runtime, self.models_dir)
        total = len(frames)
        out = np.empty((total, DIMENSIONS), dtype=np.float16)
        done = 0
        for start, crops in self._prepared_batches(frames):
            features = describe(crops)
            count = len(crops) // 2
            out[start:start + count] = features.reshape(count, DIMENSIONS)
            done += count
            if progress:
                progress(done / total)
        return out

    def _prepared_batches(self, frames):
        """Yield (start, crops) with crops of batch i+1 made while batch i is in the network."""
        prepared = queue.Queue(maxsize=2)
        failure = []
        stop = threading.Event()

        def produce():
            import cv2

            cv2.setNumThreads(1)  # the network has the cores; one thread crops
            try:
                for start in range(0, len(frames), self.batch_size):
                    # Frames of several sources may differ in size (a 4:3 video beside 16:9 ones):
                    # each is cropped on its own, so a batch may be a list of them.
                    batch = frames[start:start + self.batch_size]
                    crops = np.stack([crop for frame in batch
                                      for crop in left_and_right_squares(np.asarray(frame), CROP)])
                    while not stop.is_set():
                        try:
                            prepared.put((start, crops), timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:
                failure.append(exc)
            finally:
                prepared.put(None)

        worker = threading.Thread(target=produce, name="crop-frames", daemon=True)
        worker.start()
        try:
            while (item := prepared.get()) is not None:
                yield item
        finally:
            stop.set()
            worker.join(timeout=5)
        if failure:
            raise failure[0]


def chunk_name(start):
    return f"features-{start:08d}"


def read_feature_chunks(directory, n_frames, produced_by):
    """The source's features as a list of (rows, 4096) arrays covering frames 0..n-1 in
    order, or None when some chunk is missing or was made from other inputs."""
    from workers.pipeline.arrays import open_array, read_manifest

    chunks, start = [], 0
    while start < n_frames:
        manifest = read_manifest(directory, chunk_name(start))
        if manifest is None:
            return None
        made = manifest["produced_by"]
        if {k: made.get(k) for k in produced_by} != produced_by or made.get("start") != start:
            return None
        chunks.append(open_array(directory, chunk_name(start)))
        start = made["stop"]
    return chunks if start == n_frames else None
