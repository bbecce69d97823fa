"""The loss terms the map's autoencoder combines (workers/pipeline/autoencoder.py).

Each works on TensorFlow tensors inside the training step; `triplet_log_ratio` also on
numpy arrays, so tests and the quality report use the same definition as training.
TensorFlow is imported inside the functions, so importing this module does not load it.
"""
import numpy as np


def triplet_log_ratio(a, b, c, eps=1e-2):
    """log((eps + |a-b|^2) / (eps + |b-c|^2)) per row, for (n, d) arrays a, b, c.

    numpy arrays give a numpy array; TensorFlow tensors give a tensor (usable inside a
    tf.function and differentiable), so training and tests use the same definition.
    """
    if all(isinstance(v, (np.ndarray, list, tuple)) for v in (a, b, c)):
        a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
        return np.log((eps + np.sum((a - b) ** 2, axis=-1)) / (eps + np.sum((b - c) ** 2, axis=-1)))
    import tensorflow as tf

    near = tf.reduce_sum(tf.square(a - b), axis=-1)
    far = tf.reduce_sum(tf.square(b - c), axis=-1)
    return tf.math.log(eps + near) - tf.math.log(eps + far)


def neighbourhood_divergence(x, z, perplexity=30.0, scale=10.0, steps=40):
    """Parametric t-SNE's loss on one batch: KL(P || Q), where P are the batch's t-SNE
    affinities in the input space (each row's Gaussian width set by bisection so its
    perplexity is `perplexity`) and Q the Student-t affinities of the codes times `scale`.

    Why: random triplets keep the global layout but not who is next to whom, which is
    what a map is read for (trustworthiness); this term asks for exactly that. The codes
    are kept at a standard deviation of 0.3 by the regularizer, so `scale` spreads them
    to the range where the heavy-tailed Student-t kernel separates groups.
    """
    import tensorflow as tf

    dtype = x.dtype  # float32 in training; the tests also run it in float64
    n = tf.shape(x)[0]
    rows = tf.cast(n, dtype)
    off_diagonal = 1.0 - tf.eye(n, dtype=dtype)
    squared = tf.reduce_sum(tf.square(x), axis=1)
    distances = tf.maximum(squared[:, None] + squared[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True), 0.0)
    distances /= tf.reduce_sum(distances * off_diagonal, axis=1, keepdims=True) / (rows - 1.0) + 1e-12
    target = tf.math.log(tf.minimum(tf.cast(perplexity, dtype), (rows - 1.0) / 3.0))
    # The log of each row's precision, by bisection between e^-20 and e^20.
    low, high = tf.fill([n], tf.constant(-20.0, dtype)), tf.fill([n], tf.constant(20.0, dtype))
    for _ in range(steps):
        middle = (low + high) / 2.0
        logits = -tf.exp(middle)[:, None] * distances - 1e9 * (1.0 - off_diagonal)
        p = tf.nn.softmax(logits, axis=1)
        entropy = -tf.reduce_sum(p * tf.math.log(p + 1e-12), axis=1)
        flat = entropy > target  # too many neighbours: sharpen
        low, high = tf.where(flat, middle, low), tf.where(flat, high, middle)
    p = tf.stop_gradient((p + tf.transpose(p)) / (2.0 * rows))
    scaled = z * scale
    squared_z = tf.reduce_sum(tf.square(scaled), axis=1)
    kernel = off_diagonal / (1.0 + tf.maximum(
        squared_z[:, None] + squared_z[None, :] - 2.0 * tf.matmul(scaled, scaled, transpose_b=True), 0.0))
    q = kernel / tf.reduce_sum(kernel)
    return tf.reduce_sum(p * (tf.math.log(p + 1e-12) - tf.math.log(q + 1e-12)))


def graph_cross_entropy(head_codes, tail_codes, negative_heads, negative_tails, a, b):
    """UMAP's cross-entropy on sampled edges (Sainburg et al., 2021, parametric UMAP):
    (attraction, repulsion), each a mean.

    Each edge (head_codes[i], tail_codes[i]) of the neighbour graph, drawn in proportion
    to its weight, is pulled together: -log q(d) with q(d) = 1 / (1 + a d^(2b)), the
    heavy-tailed similarity of two points d apart on the map (curve_parameters). Pairs
    (negative_heads[j], negative_tails[j]), random pairs of the batch standing for the
    pairs that are not edges, are pushed apart: -log(1 - q(d)). The clip keeps one pair
    that lands on another from giving an infinite loss.
    """
    import tensorflow as tf

    def similarity(p, q):
        squared = tf.reduce_sum(tf.square(p - q), axis=-1)
        return 1.0 / (1.0 + a * tf.pow(squared + 1e-6, b))  # d^(2b) = (d^2)^b; 1e-6: finite gradient at 0

    attraction = -tf.reduce_mean(tf.math.log(tf.clip_by_value(similarity(head_codes, tail_codes), 1e-4, 1.0)))
    repulsion = -tf.reduce_mean(tf.math.log(tf.clip_by_value(
        1.0 - similarity(negative_heads, negative_tails), 1e-4, 1.0)))
    return attraction, repulsion
