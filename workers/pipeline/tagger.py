"""The tagger: a classifier head on the frames' 4096-d Xception features, trained from the
labels people gave (explorer/labels.py) and applied to every frame. Xception is the frozen
base; only the head learns, so training takes seconds and needs a handful of labels.

Two heads:
- `softmax` (the default): multinomial logistic regression (scikit-learn, L2-regularized)
  on standardized features.
- `dense`: one hidden layer of HIDDEN units (Keras, relu, dropout, L2), for many labels
  whose classes a linear boundary does not separate.
Both use class weights inversely proportional to each label's frames, so a label with few
frames is not drowned by a large one.

Validation is by video: whole videos are held out (a photo is a video of one frame), so
frames of one video are never on both sides and the figures are not flattered by
near-identical neighbours. The tagger that is kept then learns from every labelled frame.

Pure computation: arrays in, a Head and a report out. A Head is plain arrays (weights,
biases, the standardization) and predicts with NumPy, so the web process can apply it
without loading TensorFlow.
"""
from collections import Counter

import numpy as np

HEADS = ("softmax", "dense")
MIN_FRAMES_PER_LABEL = 2
VALIDATION_SHARE = 0.2  # of the labelled frames, in whole videos
SOFTMAX_C = 1.0  # inverse L2 strength of the softmax head, on standardized features
HIDDEN = 256
DENSE_EPOCHS = 60


class TaggerError(ValueError):
    """The labels cannot train a tagger; the message says what is missing."""


def check_labels(counts):
    """Refuse labels that cannot train a tagger, saying how many more frames are needed.
    `counts`: {label name: labelled frames}."""
    need = MIN_FRAMES_PER_LABEL
    if not counts:
        raise TaggerError(f"no frame is labelled yet: label frames of at least 2 kinds ({need} frames each or more) "
                          "to train a tagger")
    if len(counts) == 1:
        (name, count), = counts.items()
        raise TaggerError(f"only one label ({name!r}, {count} frame(s)): a tagger tells labels apart; label at least "
                          f"{need} frames of at least one other kind")
    short = sorted((name, count) for name, count in counts.items() if count < need)
    if short:
        listed = ", ".join(f"{name!r} has {count} frame(s): label {need - count} more" for name, count in short)
        raise TaggerError(f"every label needs at least {need} labelled frames: {listed}")


def split_by_video(labels, videos, share=VALIDATION_SHARE, seed=0):
    """A boolean mask of the validation frames: whole videos, about `share` of the frames
    (at most twice that), chosen at random (`seed`): first one video for each label that
    has one to spare, then more until the share is reached. Every label keeps at least one
    video on the training side, so a label whose frames all come from one video is never
    validated."""
    labels, videos = np.asarray(labels), np.asarray(videos)
    rng = np.random.default_rng(seed)
    training_videos = {label: len(np.unique(videos[labels == label])) for label in np.unique(labels)}
    order = rng.permutation(np.unique(videos))
    target, taken, held, validated = share * len(labels), 0, set(), set()
    for first_of_a_label in (True, False):
        for video in order:
            if taken >= target:
                break
            mine = videos == video
            present = set(np.unique(labels[mine]).tolist())
            if (video in held or any(training_videos[label] <= 1 for label in present)
                    or (first_of_a_label and present <= validated) or taken + mine.sum() > 2 * target):
                continue
            held.add(video)
            validated |= present
            taken += int(mine.sum())
            for label in present:
                training_videos[label] -= 1
    return np.isin(videos, list(held))


class Head:
    """probabilities = softmax(dense layers of (features - mean) / scale), relu between layers."""

    def __init__(self, classes, mean, scale, layers, kind):
        self.classes, self.kind = list(classes), kind
        self.mean, self.scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]

    def probabilities(self, features, batch=8192):
        """(n, 4096) features, any array-like -> (n, classes) float32 rows that sum to 1."""
        out = np.empty((len(features), len(self.classes)), dtype=np.float32)
        for start in range(0, len(features), batch):
            values = (np.asarray(features[start:start + batch], dtype=np.float32) - self.mean) / self.scale
            for depth, (weights, bias) in enumerate(self.layers):
                values = values @ weights + bias
                if depth < len(self.layers) - 1:
                    np.maximum(values, 0, out=values)
            values -= values.max(axis=1, keepdims=True)
            np.exp(values, out=values)
            out[start:start + batch] = values / values.sum(axis=1, keepdims=True)
        return out

    def save(self, path):
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.layers)}
        arrays.update({f"b{i}": b for i, (_, b) in enumerate(self.layers)})
        np.savez(path, classes=np.array(self.classes), mean=self.mean, scale=self.scale,
                 kind=np.array(self.kind), depth=np.array(len(self.layers)), **arrays)

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as saved:
            depth = int(saved["depth"])
            return cls([str(c) for c in saved["classes"]], saved["mean"], saved["scale"],
                       [(saved[f"w{i}"], saved[f"b{i}"]) for i in range(depth)], str(saved["kind"]))


def fit_head(features, targets, classes, kind="softmax", seed=0, progress=None):
    """A Head trained on `features` (n, d) with `targets` (n,) indexes into `classes`."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.class_weight import compute_class_weight

    if kind not in HEADS:
        raise TaggerError(f"no head {kind!r}: the heads are {', '.join(HEADS)}")
    features = np.asarray(features, dtype=np.float32)
    scaler = StandardScaler().fit(features)
    scale = np.where(scaler.scale_ > 1e-6, scaler.scale_, 1.0)
    standard = (features - scaler.mean_) / scale
    present = np.unique(targets)
    weights = dict(zip(present, compute_class_weight("balanced", classes=present, y=targets)))
    fit = _fit_softmax if kind == "softmax" else _fit_dense
    layers = fit(standard.astype(np.float32), targets, len(classes), weights, seed, progress or (lambda f: None))
    return Head(classes, scaler.mean_, scale, layers, kind)


def _fit_softmax(standard, targets, n_classes, weights, seed, progress):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=SOFTMAX_C, class_weight=weights, max_iter=2000, random_state=seed)
    model.fit(standard, targets)
    progress(1.0)
    # Classes with no training frame (possible only in validation) get a bias that never wins.
    weight = np.zeros((standard.shape[1], n_classes), np.float32)
    bias = np.full(n_classes, -1e4, np.float32)
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: softmax of (-z/2, z/2)
        weight[:, model.classes_] = np.stack([-model.coef_[0] / 2, model.coef_[0] / 2], axis=1)
        bias[model.classes_] = [-model.intercept_[0] / 2, model.intercept_[0] / 2]
    else:
        weight[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return [(weight, bias)]


def _fit_dense(standard, targets, n_classes, weights, seed, progress):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((standard.shape[1],)),
        keras.layers.Dense(HIDDEN, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4)),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(n_classes, kernel_regularizer=keras.regularizers.L2(1e-4)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    report = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: progress((epoch + 1) / DENSE_EPOCHS))
    model.fit(standard, targets, epochs=DENSE_EPOCHS, batch_size=32, class_weight={int(k): float(v) for k, v in
              weights.items()}, verbose=0, callbacks=[report], shuffle=True)
    hidden, _, output = model.layers
    return [tuple(hidden.get_weights()), tuple(output.get_weights())]


def evaluate(head, features, targets):
    """Accuracy, per-label precision and recall, and the confusion matrix (rows: the label
    given, columns: the label predicted) of `head` on frames of known labels."""
    return scores(head.probabilities(features).argmax(axis=1), targets, head.classes)


def scores(predicted, targets, classes):
    """evaluate()'s figures for predicted class indexes against the true ones."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    every = list(range(len(classes)))
    precision, recall, _, support = precision_recall_fscore_support(targets, predicted, labels=every,
                                                                    zero_division=0)
    return {"frames": int(len(targets)), "accuracy": float(np.mean(predicted == targets)),
            "per_label": [{"label": name, "precision": float(p), "recall": float(r), "frames": int(s)}
                          for name, p, r, s in zip(classes, precision, recall, support)],
            "confusion": confusion_matrix(targets, predicted, labels=every).tolist()}


def train(features, names, videos, kind="softmax", seed=0, progress=None):
    """Train a tagger on labelled frames: `features` (n, d), `names` (n,) their labels,
    `videos` (n,) the video of each (for the split). Returns (Head, report): the head
    learned from every labelled frame, and the validation of one that learned without the
    held-out videos (report["validation"] is None when no video could be held out)."""
    counts = Counter(np.asarray(names).tolist())
    check_labels(counts)
    report = progress or (lambda f: None)
    names, videos = np.asarray(names), np.asarray(videos)
    classes = sorted(set(names.tolist()))
    targets = np.searchsorted(classes, names)
    held = split_by_video(names, videos, seed=seed)
    validation = None
    if held.any():
        trial = fit_head(features[~held], targets[~held], classes, kind, seed, lambda f: report(0.5 * f))
        validation = {**evaluate(trial, features[held], targets[held]),
                      "videos": int(len(np.unique(videos[held])))}
    head = fit_head(features, targets, classes, kind, seed, lambda f: report(0.5 + 0.5 * f))
    return head, {"head": kind, "labels": [{"label": name, "frames": counts[name],
                                            "videos": int(len(np.unique(videos[names == name])))}
                                           for name in classes],
                  "frames": int(len(names)), "videos": int(len(np.unique(videos))), "validation": validation,
                  "unvalidated": [name for name in classes if validation is None
                                  or not np.any(names[held] == name)]}


def top(probabilities, classes, count=3):
    """The `count` most probable labels of one row of probabilities, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:count]
    return [(int(i), classes[i], float(probabilities[i])) for i in order]
