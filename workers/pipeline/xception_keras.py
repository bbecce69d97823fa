"""Xception in Keras (TensorFlow): the network the features are defined by, run as a
tf.function, and the model that workers/pipeline/xception_openvino.py converts.

uint8 crops (batch, 299, 299, 3) in; Keras's own preprocessing (x / 127.5 - 1) inside;
ImageNet weights (or a path, or seeded random ones), no top, global average pooling;
(batch, 2048) float32 out. TensorFlow is imported only when a network is built.
"""
import numpy as np

CROP = 299  # the side of the square crops Xception sees
KERAS_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # Keras mixed-precision policies


class WeightsError(Exception):
    """The Xception weights cannot be had; the message says what to set."""


def gpu_available():
    """True when TensorFlow sees a GPU (it imports TensorFlow)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class KerasXception:
    """The network as a callable: uint8 crops -> (batch, 2048) float32 NumPy array.
    `function` is the tf.function itself (what OpenVINO converts); `precision` its policy."""

    def __init__(self, function, precision):
        self.function, self.precision = function, precision

    def __call__(self, crops):
        return self.function(np.asarray(crops, dtype=np.uint8)).numpy()


def build(weights, precision):
    """A KerasXception with `weights` ('imagenet', 'random' or a path to an .h5 file) whose
    layers compute in the Keras policy `precision` (one of KERAS_PRECISIONS)."""
    import keras
    import tensorflow as tf

    if precision not in KERAS_PRECISIONS:
        raise ValueError(f"{precision!r} is not a Keras precision ({', '.join(KERAS_PRECISIONS)})")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)  # only for the layers built here
    try:
        if weights == "random":
            keras.utils.set_random_seed(0)  # reproducible random features for tests and demos
        source = None if weights == "random" else weights
        try:
            model = keras.applications.Xception(include_top=False, weights=source, pooling="avg",
                                                input_shape=(CROP, CROP, 3))
        except Exception as exc:  # Keras raises plain Exceptions for a failed download
            if weights == "imagenet":
                raise WeightsError(
                    "the ImageNet weights for Xception are neither in Keras's cache (~/.keras/models) nor "
                    f"downloadable ({exc}); set it to the path of "
                    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5, or to 'random' for a demo") from None
            raise WeightsError(f"cannot load Xception weights from {weights}: {exc}") from None
    finally:
        keras.mixed_precision.set_global_policy(previous)

    @tf.function(input_signature=[tf.TensorSpec([None, CROP, CROP, 3], tf.uint8, name="crops")])
    def describe(crops):
        pixels = tf.cast(crops, tf.float32) / 127.5 - 1.0  # keras.applications.xception.preprocess_input
        return tf.cast(model(pixels, training=False), tf.float32)

    return KerasXception(describe, precision)
