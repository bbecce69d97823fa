"""How the map's training (workers/pipeline/autoencoder.py) draws its batches.

A batch is (rows, triplets, edges, negatives): float32 rows of X, and index arrays into
them, (t, 3) triplets A, B, C for the triplet term, (e, 2) edge pairs for the graph term's
attraction and (e * negatives, 2) pairs for its repulsion. An epoch is an iterable of
batches; X may be a memmap larger than RAM, read in blocks or in sorted rows, never whole.
"""
import numpy as np


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


def read_rows(X, indices):
    """X[indices] in the order given, reading a memmap in increasing row order."""
    order = np.argsort(indices, kind="stable")
    rows = np.empty((len(indices), X.shape[1]), dtype=np.float32)
    rows[order] = np.asarray(X[indices[order]], dtype=np.float32)
    return rows


def streamed_epochs(X, epochs, batch_size, triplets_per_batch, rng, buffer_rows):
    """`epochs` passes over X's rows in shuffled batches, random triplets, no graph pairs."""
    none = np.zeros((0, 2), dtype=np.int64)

    def batch(rows):
        return rows, rng.integers(0, len(rows), size=(triplets_per_batch, 3)), none, none

    return ((batch(rows) for _, rows in iter_shuffled_batches(X, batch_size, rng, buffer_rows))
            for _ in range(epochs))


def graph_epochs(X, graph, epochs, max_steps, edges, negatives, triplets, triplets_per_batch, rng):
    """(number of epochs, the epochs) of batches of `edges` edges drawn from `graph` (an
    EdgeSampler): rows are the edges' heads, then their tails. An epoch draws as many edges as
    the graph's total weight; at most `max_steps` batches in all (0: no limit)."""
    edges = max(1, edges)
    per_epoch = max(1, int(np.ceil(graph.total / edges)))
    steps = min(epochs * per_epoch, max_steps or epochs * per_epoch)

    def batch():
        heads, tails = graph.draw(rng, edges)
        rows = np.concatenate([read_rows(X, heads), read_rows(X, tails)])
        pairs = np.stack([np.arange(edges), edges + np.arange(edges)], axis=1)
        # Negatives: each head with `negatives` random tails of the batch, mostly not its neighbours.
        apart = np.stack([np.repeat(np.arange(edges), negatives),
                          edges + rng.integers(0, edges, size=edges * negatives)], axis=1)
        b = rng.integers(0, edges, size=triplets_per_batch)
        if triplets == "neighbours":  # A a graph neighbour of B, C random
            chosen = np.stack([edges + b, b, rng.integers(0, 2 * edges, size=len(b))], axis=1)
        else:
            chosen = rng.integers(0, 2 * edges, size=(triplets_per_batch, 3))
        return rows, chosen, pairs, apart

    return -(-steps // per_epoch), ((batch() for _ in range(first, min(steps, first + per_epoch)))
                                    for first in range(0, steps, per_epoch))
