"""Stage 4, autoencoder: the article's triplet-regularized autoencoder, 256 -> 2 dimensions.

Why an autoencoder and not t-SNE or UMAP: the trained encoder is a function, so new
frames are placed on an existing map without re-running a projection (see DESIGN.md,
"Quality yardstick"). The architecture is the article's, Dense and BatchNormalization only:

    encoder 256 -> 50 -> 10 -> 2        elu, elu, tanh          13,622 parameters
    decoder 2 -> 6 -> 22 -> 76 -> 256   elu, elu, elu, linear   22,048 parameters

(parameter counts for 256 inputs, BatchNormalization's moving statistics included).

The loss is a weighted sum of five terms (workers/pipeline/map_losses.py):
  graph           UMAP's cross-entropy on the fuzzy neighbour graph of the inputs
                  (workers/pipeline/neighbour_graph.py), as parametric UMAP trains it:
                  edges drawn in proportion to their weight are pulled together on the
                  map, random pairs of the batch pushed apart. This is the term that
                  makes 2D neighbours real neighbours (trustworthiness): it lifted the
                  product's map from 0.984 to 0.993 on the sample media, near t-SNE's
                  0.997 (tests/benchmarks/quality_report.py). The codes are multiplied by
                  `graph_scale` first, so UMAP's curve (`min_dist`) sees its usual range
                  while the regularizer keeps the codes inside tanh's (-1, 1);
  reconstruction  mean squared error of decoder(encoder(x)) against x;
  regularizer     the 2D code's batch mean pulled toward 0 and its batch standard
                  deviation toward `code_std` (0.3), per code dimension, so the cloud
                  neither collapses nor saturates the tanh;
  triplet         for triplets A, B, C of frames in the batch, the log ratio
                  log((eps + |A-B|^2) / (eps + |B-C|^2)) of the 256-d inputs should be
                  reproduced by the same quantity on their 2D codes. Only ratios of
                  distances are asked for, so the 2D scale stays free for the regularizer.
                  "random" triplets are three random frames of the batch (the article's:
                  mostly far pairs, so the global layout); "neighbours" triplets take B a
                  frame, A a graph neighbour of B and C random, so they compare a near
                  pair with a far one;
  neighbourhood   parametric t-SNE's divergence within each batch (the product's term
                  before the graph term; off by default, kept for comparison).

Inputs are scaled to unit variance per dimension on average, so the weights balance the
same way whatever the features' scale.

Batches: while the graph is used (graph_weight > 0 or "neighbours" triplets), a batch is
`batch_size` // 2 edges drawn from the graph, their heads and then their tails, and an
epoch draws as many edges as the graph's total weight; training stops after `max_steps`
steps at most (0: no limit), so the training steps of a large collection take a bounded
time (a parametric encoder learns from samples and does not need each edge of 100,000
frames visited hundreds of times, as UMAP's own optimisation does; building the graph
still grows with the frames). A graph without edges (every frame the same) falls back to
streamed rows. Without the graph, batches stream shuffled rows from X,
which may be a memory-mapped array larger than RAM: blocks of rows are read in a random
order, a few blocks at a time, and their rows shuffled together (`buffer_rows` bounds the
memory). Either way the memory is X's pages, plus while the graph is used the graph and,
while it is built, faiss's index (workers/pipeline/neighbour_graph.py: at most 51 MB, or
256 bytes a frame above 50,000 frames).

The training step is a `tf.function` without XLA (jit_compile is several times slower on
these CPUs). Runs are reproducible without touching global random state: layer
initializers get explicit seeds, and edges, shuffling and triplets come from a numpy
Generator seeded with `seed`. The graph's neighbours are exact below 50,000 frames.

TensorFlow and Keras are imported inside the functions that need them, so importing this
module (as the web process may) does not load TensorFlow.
"""
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from workers.pipeline.arrays import write_json_atomic
from workers.pipeline.map_batches import graph_epochs, read_rows, streamed_epochs

# 2 spells the neighbourhood parameters and history term the British way; 3 adds the graph term
FORMAT_VERSION = 3
# Format 1's names ("neighbor") for format 2's: a model saved before still loads.
FORMAT_1_NAMES = {"neighbors": "neighbours", "neighborhood_weight": "neighbourhood_weight",
                  "neighborhood_scale": "neighbourhood_scale", "neighborhood": "neighbourhood"}
PARAMETERS_FILE = "autoencoder.json"
ENCODER_FILE = "encoder.keras"
DECODER_FILE = "decoder.keras"
TRIPLET_MODES = ("random", "neighbours")

ENCODER_LAYERS = ((50, "elu"), (10, "elu"), (2, "tanh"))  # BatchNormalization between them
DECODER_LAYERS = ((6, "elu"), (22, "elu"), (76, "elu"))  # each followed by BatchNormalization


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


class TripletAutoencoder:
    """The article's autoencoder with a scikit-learn contract: parameters here, `fit`, learned `*_`.

    Learned state: `encoder_`, `decoder_` (Keras models), `history_` (per epoch: total
    `loss`, the unweighted `reconstruction`, `regularizer`, `triplet`, `neighbourhood`,
    `attraction` and `repulsion` terms, 0 for a term of weight 0, which is not computed,
    and the mean batch `code_std`), `n_parameters_`
    ({"encoder": ..., "decoder": ...}), `input_scale_` and `steps_` (training steps taken).

    loss = reconstruction_weight * reconstruction + regularizer_weight * regularizer
           + triplet_weight * triplet + neighbourhood_weight * neighbourhood
           + graph_weight * (attraction + negatives * repulsion)
    """

    # The defaults are the product's, chosen with tests/benchmarks/quality_report.py on
    # real media (medians over five seeds; README, "Why a neighbour graph"). The article's
    # plain reading is graph_weight=0, regularizer_weight=1, triplets="random".
    def __init__(self, input_dim=256, epochs=200, max_steps=6000, batch_size=2048, learning_rate=1e-3,
                 code_std=0.3, regularizer_weight=1.0, triplet_weight=0.0, reconstruction_weight=1.0,
                 triplets="neighbours", triplets_per_batch=1024, neighbours=10, eps=1e-2,
                 graph_weight=1.0, negatives=5, min_dist=0.1, graph_scale=10.0,
                 neighbourhood_weight=0.0, perplexity=30.0, neighbourhood_scale=30.0,
                 buffer_rows=262_144, seed=0):
        self.input_dim = input_dim
        self.epochs = epochs
        self.max_steps = max_steps
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
        self.graph_weight = graph_weight
        self.negatives = negatives
        self.min_dist = min_dist
        self.graph_scale = graph_scale
        self.neighbourhood_weight = neighbourhood_weight
        self.perplexity = perplexity
        self.neighbourhood_scale = neighbourhood_scale
        self.buffer_rows = buffer_rows
        self.seed = seed

    def get_params(self):
        return {name: getattr(self, name) for name in (
            "input_dim", "epochs", "max_steps", "batch_size", "learning_rate", "code_std", "regularizer_weight",
            "triplet_weight", "reconstruction_weight", "triplets", "triplets_per_batch", "neighbours", "eps",
            "graph_weight", "negatives", "min_dist", "graph_scale", "neighbourhood_weight", "perplexity",
            "neighbourhood_scale", "buffer_rows", "seed")}

    def _check(self, X):
        if X.ndim != 2 or X.shape[1] != self.input_dim:
            raise ValueError(f"expected an array of shape (rows, {self.input_dim}), got {X.shape}")

    def _batches(self, X, rng, progress):
        """(number of epochs, the epochs, whether they are graph batches), as map_batches gives
        them: graph batches while the graph is used and has edges (a collection of one repeated
        frame has none), else streamed rows; progress(fraction) while the graph is built."""
        if self.uses_graph():
            from workers.pipeline.neighbour_graph import EdgeSampler, fuzzy_graph, nearest_neighbours

            nearest = nearest_neighbours(X, min(self.neighbours, len(X) - 1), progress=progress)
            graph = EdgeSampler(*fuzzy_graph(*nearest))
            if graph.total > 0:
                return (*graph_epochs(X, graph, self.epochs, self.max_steps, self.batch_size // 2, self.negatives,
                                      self.triplets, self.triplets_per_batch, rng), True)
        epochs = self.epochs
        if self.max_steps:  # whole epochs within the limit (a still video's frames alone: no graph)
            epochs = min(epochs, max(1, self.max_steps // max(1, len(X) // self.batch_size)))
        return epochs, streamed_epochs(X, epochs, self.batch_size, self.triplets_per_batch, rng,
                                       self.buffer_rows), False

    def uses_graph(self):
        return bool(self.graph_weight) or self.triplets == "neighbours"

    def fit(self, X, progress=None):
        """Train on X, an (n_rows, input_dim) array or memmap; progress(fraction) as it goes
        (the neighbour graph, when used, is the first 5 %)."""
        import keras
        import tensorflow as tf

        from workers.pipeline.map_losses import graph_cross_entropy, neighbourhood_divergence, triplet_log_ratio
        from workers.pipeline.neighbour_graph import curve_parameters

        if self.triplets not in TRIPLET_MODES:
            raise ValueError(f"triplets must be one of {TRIPLET_MODES}, got {self.triplets!r}")
        for name, least in (("batch_size", 2), ("neighbours", 1), ("negatives", 1), ("epochs", 0), ("max_steps", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if not (self.graph_scale > 0 and self.min_dist >= 0):
            raise ValueError(f"graph_scale must be positive and min_dist not negative, got {self.graph_scale} "
                             f"and {self.min_dist}")
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        self._check(X)
        n = len(X)
        if n < 3:
            raise ValueError(f"the autoencoder needs at least 3 rows, got {n}")

        rng = np.random.default_rng(self.seed)
        # One scalar brings the inputs to unit variance per dimension, so the weights of the
        # terms mean the same whatever the features' scale (only reconstruction depends on it).
        sample = read_rows(X, np.sort(rng.choice(n, size=min(n, 10_000), replace=False)))
        self.input_scale_ = float(1.0 / np.sqrt(np.mean(np.var(sample, axis=0)) + 1e-12))
        scale_inputs = self.input_scale_
        encoder, decoder = build_models(self.input_dim, self.seed)
        variables = encoder.trainable_variables + decoder.trainable_variables
        optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        optimizer.build(variables)
        graph_share = 0.05 if self.uses_graph() else 0.0  # of the progress, for the neighbour graph
        count, epochs, graph_batches = self._batches(
            X, rng, (lambda done: progress(graph_share * done)) if progress else None)
        if progress and graph_share:
            progress(graph_share)  # the graph is built
        weights = [float(self.reconstruction_weight), float(self.regularizer_weight), float(self.triplet_weight),
                   float(self.neighbourhood_weight), float(self.graph_weight) if graph_batches else 0.0]
        perplexity, scale = float(self.perplexity), float(self.neighbourhood_scale)
        code_std, eps, graph_scale = float(self.code_std), float(self.eps), float(self.graph_scale)
        curve = curve_parameters(self.min_dist)
        pairs = tf.TensorSpec([None, 2], tf.int32)

        @tf.function(input_signature=[tf.TensorSpec([None, self.input_dim], tf.float32),
                                      tf.TensorSpec([None, 3], tf.int32), pairs, pairs])
        def train_step(x, triplets, edges, negatives):
            x = x * scale_inputs
            with tf.GradientTape() as tape:
                z = encoder(x, training=True)
                reconstruction = tf.reduce_mean(tf.square(x - decoder(z, training=True)))
                mean, variance = tf.nn.moments(z, axes=[0])
                std = tf.sqrt(variance + 1e-8)  # finite gradient even for a collapsed batch
                regularizer = tf.reduce_mean(tf.square(mean) + tf.square(std - code_std))
                loss = weights[0] * reconstruction + weights[1] * regularizer
                triplet = neighbourhood = attraction = repulsion = tf.constant(0.0)
                if weights[2]:
                    a, b, c = triplets[:, 0], triplets[:, 1], triplets[:, 2]
                    r_in = triplet_log_ratio(tf.gather(x, a), tf.gather(x, b), tf.gather(x, c), eps)
                    r_code = triplet_log_ratio(tf.gather(z, a), tf.gather(z, b), tf.gather(z, c), eps)
                    triplet = tf.reduce_mean(tf.square(r_in - r_code))
                    loss += weights[2] * triplet
                if weights[3]:
                    neighbourhood = neighbourhood_divergence(x, z, perplexity, scale)
                    loss += weights[3] * neighbourhood
                if weights[4]:
                    spread = z * graph_scale
                    attraction, repulsion = graph_cross_entropy(
                        tf.gather(spread, edges[:, 0]), tf.gather(spread, edges[:, 1]),
                        tf.gather(spread, negatives[:, 0]), tf.gather(spread, negatives[:, 1]), *curve)
                    loss += weights[4] * (attraction + self.negatives * repulsion)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return tf.stack([loss, reconstruction, regularizer, triplet, neighbourhood, attraction, repulsion,
                             tf.reduce_mean(std)])

        names = ("loss", "reconstruction", "regularizer", "triplet", "neighbourhood", "attraction", "repulsion",
                 "code_std")
        self.history_ = {name: [] for name in names}
        self.steps_ = 0
        for epoch, batches in enumerate(epochs, 1):
            totals, rows_seen = np.zeros(len(names)), 0
            for rows, triplets, edges, negatives in batches:
                values = train_step(tf.constant(rows), tf.constant(triplets, dtype=tf.int32),
                                    tf.constant(edges, dtype=tf.int32), tf.constant(negatives, dtype=tf.int32)).numpy()
                totals += values * len(rows)
                rows_seen += len(rows)
                self.steps_ += 1
            for name, value in zip(names, totals / rows_seen):
                self.history_[name].append(float(value))
            if progress:
                progress(graph_share + (1.0 - graph_share) * epoch / count)

        self.encoder_, self.decoder_ = encoder, decoder
        self.n_parameters_ = {"encoder": int(encoder.count_params()), "decoder": int(decoder.count_params())}
        return self

    def transform(self, X, batch_size=8192):
        """(n_rows, input_dim) -> (n_rows, 2) float32 codes in (-1, 1), streaming over X.

        Every network call gets `batch_size` rows, the last padded with zeros: on CPUs whose
        matrix kernels are chosen by the shape, each row is then summed in one order, so a
        frame's code is the same to the last bit however many rows come with it (the old
        frames of a map placed again with new ones keep their exact places). The batch is
        rounded up to a multiple of 64 rows: Eigen's one-thread kernels (oneDNN off) sum the
        last rows of a batch of 333 in another order than the same rows inside one."""
        batch_size = -(-batch_size // 64) * 64
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        self._check(X)
        codes = np.empty((len(X), 2), dtype=np.float32)
        padded = np.zeros((batch_size, self.input_dim), dtype=np.float32)
        for start in range(0, len(X), batch_size):
            chunk = np.asarray(X[start:start + batch_size], dtype=np.float32)
            padded[:len(chunk)] = chunk
            padded[len(chunk):] = 0.0
            # A direct call: faster than model.predict, and no tf.function to trace per model.
            out = self.encoder_(padded * self.input_scale_, training=False).numpy()
            codes[start:start + len(chunk)] = out[:len(chunk)]
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
            "steps": self.steps_,
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
        if state.get("format_version", 1) < 3:  # trained before the graph term, whose parameters it lacks
            params = {"graph_weight": 0.0, "max_steps": 0, **params}
        model = cls(**params)
        model.encoder_ = keras.saving.load_model(directory / ENCODER_FILE, compile=False)
        model.decoder_ = keras.saving.load_model(directory / DECODER_FILE, compile=False)
        model.history_ = history
        model.n_parameters_ = state["n_parameters"]
        model.input_scale_ = state["input_scale"]
        model.steps_ = state.get("steps")
        return model
