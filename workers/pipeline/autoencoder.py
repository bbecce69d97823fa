"""Stage 4, autoencoder: the article's triplet-regularized autoencoder, 256 -> 2 dimensions.

Why an autoencoder and not t-SNE or UMAP: the trained encoder is a function, so new
frames are placed on an existing map without re-running a projection (see DESIGN.md,
"Quality yardstick"). The architecture is the article's, Dense and BatchNormalization only:

    encoder 256 -> 50 -> 10 -> 2        elu, elu, tanh          13,622 parameters
    decoder 2 -> 6 -> 22 -> 76 -> 256   elu, elu, elu, linear   22,048 parameters

(parameter counts for 256 inputs, BatchNormalization's moving statistics included).

The loss has three terms:
  reconstruction  mean squared error of decoder(encoder(x)) against x;
  regularizer     the 2D code's batch mean pulled toward 0 and its batch standard
                  deviation toward `code_std` (0.3), per code dimension, so the cloud
                  neither collapses nor saturates the tanh;
  triplet         for triplets A, B, C of frames in the batch, the log ratio
                  log((eps + |A-B|^2) / (eps + |B-C|^2)) of the 256-d inputs should be
                  reproduced by the same quantity on their 2D codes. Only ratios of
                  distances are asked for, so the 2D scale stays free for the regularizer.
                  One eps serves both spaces; it matters in 2D, where squared distances
                  are about 0.4 at std 0.3, while 256-d squared distances are far larger.
                  The default 1e-2 treats 2D pairs closer than ~0.1 as equally close;
                  a much smaller eps gave noisier training and worse ratio agreement.

The weights are absolute, so their balance depends on the scale of X: the reconstruction
MSE grows with the input variance, the other two terms do not.

How the triplets are drawn is a parameter, because it decides what the map preserves:
  "random"     A, B, C independent random frames of the batch (the article). Random
               pairs are mostly far apart, so this mainly preserves the global layout.
  "neighbours" B random, A one of B's `neighbours` nearest neighbours in the input space,
               C random: every triplet compares a near pair with a far one, which is what
               trustworthiness (are 2D neighbours real neighbours?) measures. The kNN
               indices are computed once over the whole training set in fit; each batch
               is half streamed rows (the anchors B, and C candidates) and half one
               sampled neighbour row for each anchor. An epoch streams every row once as
               an anchor, so it takes twice the steps of a "random" epoch.

Training streams shuffled batches from X, which may be a memory-mapped array larger than
RAM: blocks of rows are read in a random order, a few blocks at a time, and their rows
shuffled together (`buffer_rows` bounds the memory). The training step is a `tf.function`
without XLA (jit_compile is several times slower on these CPUs). Runs are reproducible
without touching global random state: layer initializers get explicit seeds, and shuffling
and triplets come from a numpy Generator seeded with `seed`.

TensorFlow and Keras are imported inside the functions that need them, so importing this
module (as the web process may) does not load TensorFlow.
"""
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import write_json_atomic

FORMAT_VERSION = 2  # 2 spells the neighbourhood parameters and history term the British way
# Format 1's names ("neighbor") for format 2's: a model saved before still loads.
FORMAT_1_NAMES = {"neighbors": "neighbours", "neighborhood_weight": "neighbourhood_weight",
                  "neighborhood_scale": "neighbourhood_scale", "neighborhood": "neighbourhood"}
PARAMETERS_FILE = "autoencoder.json"
ENCODER_FILE = "encoder.keras"
DECODER_FILE = "decoder.keras"
TRIPLET_MODES = ("random", "neighbours")

ENCODER_LAYERS = ((50, "elu"), (10, "elu"), (2, "tanh"))  # BatchNormalization between them
DECODER_LAYERS = ((6, "elu"), (22, "elu"), (76, "elu"))  # each followed by BatchNormalization


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


def build_models(input_dim=256, seed=0):
    """The untrained (encoder, decoder) Keras models; `seed` fixes the initial weights."""
    import keras

    seeds = iter(np.random.default_rng([seed, 1]).integers(0, 2**31 - 1, size=16).tolist())

    def dense(units, activation):
        return keras.layers.Dense(units, activation=activation,
                                  kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)))

    encoder = keras.Sequential([keras.Input((input_dim,))], name="encoder")
    for i, (units, activation) in enumerate(ENCODER_LAYERS):
        if i:
            encoder.add(keras.layers.BatchNormalization())
        encoder.add(dense(units, activation))

    decoder = keras.Sequential([keras.Input((ENCODER_LAYERS[-1][0],))], name="decoder")
    for units, activation in DECODER_LAYERS:
        decoder.add(dense(units, activation))
        decoder.add(keras.layers.BatchNormalization())
    decoder.add(dense(input_dim, "linear"))
    return encoder, decoder


def iter_shuffled_batches(X, batch_size, rng, buffer_rows=262_144, blocks_per_buffer=8):
    """Yield (row indices, float32 rows) covering every row of X once, in a shuffled order.

    X is read in contiguous blocks (never fancy-indexed as a whole, so a memmap is read
    sequentially): the block order is random, `blocks_per_buffer` blocks are read into a
    buffer of at most `buffer_rows` rows and their rows shuffled together, then cut into
    batches. Every batch has `batch_size` rows except the last: a remainder of at least
    half a batch comes as a smaller batch, a smaller one joins the last full batch (a
    batch of a few rows would give BatchNormalization meaningless statistics).
    """
    n = len(X)
    block = max(1, buffer_rows // blocks_per_buffer)
    starts = rng.permutation(np.arange(0, n, block))
    carry_idx = np.empty(0, dtype=np.int64)
    carry_rows = np.empty((0, X.shape[1]), dtype=np.float32)
    pending = None  # the latest full batch, held back in case the remainder must join it
    for g in range(0, len(starts), blocks_per_buffer):
        group = starts[g:g + blocks_per_buffer]
        idx = np.concatenate([carry_idx] + [np.arange(s, min(s + block, n)) for s in group])
        rows = np.concatenate([carry_rows] + [np.asarray(X[s:s + block], dtype=np.float32) for s in group])
        order = rng.permutation(len(idx))
        idx, rows = idx[order], rows[order]
        full = len(idx) // batch_size * batch_size
        for i in range(0, full, batch_size):
            if pending is not None:
                yield pending
            pending = idx[i:i + batch_size], rows[i:i + batch_size]
        carry_idx, carry_rows = idx[full:], rows[full:]
    if pending is not None and len(carry_idx) < batch_size / 2:
        pending = np.concatenate([pending[0], carry_idx]), np.concatenate([pending[1], carry_rows])
        carry_idx = carry_idx[:0]
    if pending is not None:
        yield pending
    if len(carry_idx):
        yield carry_idx, carry_rows


def _read_rows(X, indices):
    """X[indices] in the order given, reading a memmap in increasing row order."""
    order = np.argsort(indices, kind="stable")
    rows = np.empty((len(indices), X.shape[1]), dtype=np.float32)
    rows[order] = np.asarray(X[indices[order]], dtype=np.float32)
    return rows


class TripletAutoencoder:
    """The article's autoencoder with a scikit-learn contract: parameters here, `fit`, learned `*_`.

    Learned state: `encoder_`, `decoder_` (Keras models), `history_` (per epoch: total
    `loss` and the unweighted `reconstruction`, `regularizer` and `triplet` terms, and the
    mean batch `code_std`), `n_parameters_` ({"encoder": ..., "decoder": ...}) and, for
    `triplets="neighbours"`, `neighbour_indices_` (n_rows, neighbours).

    loss = reconstruction_weight * reconstruction + regularizer_weight * regularizer
           + triplet_weight * triplet + neighbourhood_weight * neighbourhood

    Inputs are multiplied by `input_scale_` (learned in fit: unit variance per dimension
    on average), so the weights balance the same way whatever the features' scale.
    """

    # The defaults are the product's, chosen with tests/benchmarks/quality_report.py on
    # real media: the article's terms plus the neighbourhood term (parametric t-SNE),
    # which lifts trustworthiness from 0.92 to 0.98 there (medians over five seeds). The
    # article's plain reading is neighbourhood_weight=0, regularizer_weight=1.
    def __init__(self, input_dim=256, epochs=60, batch_size=256, learning_rate=1e-3, code_std=0.3,
                 regularizer_weight=30.0, triplet_weight=1.0, reconstruction_weight=1.0,
                 triplets="random", triplets_per_batch=1024, neighbours=10, eps=1e-2,
                 neighbourhood_weight=10.0, perplexity=30.0, neighbourhood_scale=30.0,
                 buffer_rows=262_144, seed=0):
        self.input_dim = input_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.code_std = code_std
        self.regularizer_weight = regularizer_weight
        self.triplet_weight = triplet_weight
        self.reconstruction_weight = reconstruction_weight
        self.triplets = triplets
        self.triplets_per_batch = triplets_per_batch
        self.neighbours = neighbours
        self.eps = eps
        self.neighbourhood_weight = neighbourhood_weight
        self.perplexity = perplexity
        self.neighbourhood_scale = neighbourhood_scale
        self.buffer_rows = buffer_rows
        self.seed = seed

    def get_params(self):
        return {name: getattr(self, name) for name in (
            "input_dim", "epochs", "batch_size", "learning_rate", "code_std", "regularizer_weight",
            "triplet_weight", "reconstruction_weight", "triplets", "triplets_per_batch", "neighbours",
            "eps", "neighbourhood_weight", "perplexity", "neighbourhood_scale", "buffer_rows", "seed")}

    def _check(self, X):
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"expected an array of shape (rows, {self.input_dim}), got {X.shape}")

    def fit(self, X, progress=None):
        """Train on X, an (n_rows, input_dim) array or memmap; progress(fraction) after each epoch."""
        import keras
        import tensorflow as tf

        if self.triplets not in TRIPLET_MODES:
            raise ValueError(f"triplets must be one of {TRIPLET_MODES}, got {self.triplets!r}")
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        self._check(X)
        n = len(X)
        if n < 3:
            raise ValueError(f"the autoencoder needs at least 3 rows, got {n}")
        neighbour_mode = self.triplets == "neighbours"
        if neighbour_mode:
            from sklearn.neighbors import NearestNeighbors

            k = min(self.neighbours, n - 1)
            self.neighbour_indices_ = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(return_distance=False)
            streamed = max(1, self.batch_size // 2)  # the other half: one neighbour per anchor
        else:
            self.__dict__.pop("neighbour_indices_", None)  # from an earlier fit
            streamed = self.batch_size

        rng = np.random.default_rng(self.seed)
        # One scalar brings the inputs to unit variance per dimension, so the weights of the
        # terms mean the same whatever the features' scale (only reconstruction depends on it).
        sample = _read_rows(X, np.sort(rng.choice(n, size=min(n, 10_000), replace=False)))
        self.input_scale_ = float(1.0 / np.sqrt(np.mean(np.var(sample, axis=0)) + 1e-12))
        scale_inputs = self.input_scale_
        encoder, decoder = build_models(self.input_dim, self.seed)
        variables = encoder.trainable_variables + decoder.trainable_variables
        optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        optimizer.build(variables)
        weights = [float(self.reconstruction_weight), float(self.regularizer_weight), float(self.triplet_weight),
                   float(self.neighbourhood_weight)]
        perplexity, scale = float(self.perplexity), float(self.neighbourhood_scale)
        code_std, eps = float(self.code_std), float(self.eps)

        @tf.function(input_signature=[tf.TensorSpec([None, self.input_dim], tf.float32),
                                      tf.TensorSpec([None, 3], tf.int32)])
        def train_step(x, triplets):
            x = x * scale_inputs
            with tf.GradientTape() as tape:
                z = encoder(x, training=True)
                reconstruction = tf.reduce_mean(tf.square(x - decoder(z, training=True)))
                mean, variance = tf.nn.moments(z, axes=[0])
                std = tf.sqrt(variance + 1e-8)  # finite gradient even for a collapsed batch
                regularizer = tf.reduce_mean(tf.square(mean) + tf.square(std - code_std))
                a, b, c = triplets[:, 0], triplets[:, 1], triplets[:, 2]
                r_in = triplet_log_ratio(tf.gather(x, a), tf.gather(x, b), tf.gather(x, c), eps)
                r_code = triplet_log_ratio(tf.gather(z, a), tf.gather(z, b), tf.gather(z, c), eps)
                triplet = tf.reduce_mean(tf.square(r_in - r_code))
                loss = weights[0] * reconstruction + weights[1] * regularizer + weights[2] * triplet
                if weights[3]:
                    neighbourhood = neighbourhood_divergence(x, z, perplexity, scale)
                    loss += weights[3] * neighbourhood
                else:
                    neighbourhood = tf.constant(0.0)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return tf.stack([loss, reconstruction, regularizer, triplet, neighbourhood, tf.reduce_mean(std)])

        names = ("loss", "reconstruction", "regularizer", "triplet", "neighbourhood", "code_std")
        self.history_ = {name: [] for name in names}
        for epoch in range(self.epochs):
            totals, rows_seen = np.zeros(len(names)), 0
            for idx, rows in iter_shuffled_batches(X, streamed, rng, self.buffer_rows):
                if neighbour_mode:
                    m = len(idx)
                    partners = self.neighbour_indices_[idx, rng.integers(0, k, size=m)]
                    rows = np.concatenate([rows, _read_rows(X, partners)])
                    b = rng.integers(0, m, size=self.triplets_per_batch)  # anchor B
                    triplets = np.stack([m + b, b, rng.integers(0, len(rows), size=len(b))], axis=1)
                else:
                    triplets = rng.integers(0, len(rows), size=(self.triplets_per_batch, 3))
                values = train_step(tf.constant(rows), tf.constant(triplets, dtype=tf.int32)).numpy()
                totals += values * len(rows)
                rows_seen += len(rows)
            for name, value in zip(names, totals / rows_seen):
                self.history_[name].append(float(value))
            if progress:
                progress((epoch + 1) / self.epochs)

        self.encoder_, self.decoder_ = encoder, decoder
        self.n_parameters_ = {"encoder": int(encoder.count_params()), "decoder": int(decoder.count_params())}
        return self

    def transform(self, X, batch_size=8192):
        """(n_rows, input_dim) -> (n_rows, 2) float32 codes in (-1, 1), streaming over X."""
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        self._check(X)
        codes = np.empty((len(X), 2), dtype=np.float32)
        for start in range(0, len(X), batch_size):
            chunk = np.asarray(X[start:start + batch_size], dtype=np.float32)
            # A direct call: faster than model.predict, and no tf.function to trace per model.
            codes[start:start + batch_size] = self.encoder_(chunk * self.input_scale_, training=False).numpy()
        return codes

    def fit_transform(self, X, progress=None):
        return self.fit(X, progress).transform(X)

    def save(self, directory):
        """Write encoder.keras, decoder.keras and autoencoder.json into `directory`, atomically.

        The models are written into a temporary folder and renamed into place; the JSON
        is removed first and written last, so a directory whose JSON exists is complete.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".autoencoder.{uuid.uuid4().hex}.partial"
        tmp.mkdir()
        try:
            self.encoder_.save(tmp / ENCODER_FILE)
            self.decoder_.save(tmp / DECODER_FILE)
            (directory / PARAMETERS_FILE).unlink(missing_ok=True)
            for name in (ENCODER_FILE, DECODER_FILE):
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_json_atomic(directory / PARAMETERS_FILE, {
            "format_version": FORMAT_VERSION,
            "params": self.get_params(),
            "history": self.history_,
            "n_parameters": self.n_parameters_,
            "input_scale": self.input_scale_,
        })

    @classmethod
    def load(cls, directory):
        """The autoencoder that `save` wrote into `directory` (FileNotFoundError if incomplete)."""
        import json

        import keras

        directory = Path(directory)
        with open(directory / PARAMETERS_FILE, encoding="utf-8") as handle:
            state = json.load(handle)
        params, history = state["params"], state["history"]
        if state.get("format_version") == 1:
            params = {FORMAT_1_NAMES.get(name, name): value for name, value in params.items()}
            params["triplets"] = FORMAT_1_NAMES.get(params["triplets"], params["triplets"])
            history = {FORMAT_1_NAMES.get(term, term): values for term, values in history.items()}
        model = cls(**params)
        model.encoder_ = keras.saving.load_model(directory / ENCODER_FILE, compile=False)
        model.decoder_ = keras.saving.load_model(directory / DECODER_FILE, compile=False)
        model.history_ = history
        model.n_parameters_ = state["n_parameters"]
        model.input_scale_ = state["input_scale"]
        return model
