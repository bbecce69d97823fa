"""Fine-tuning the top of Xception on the labelled frames (`manage.py tag --fine-tune`), to
show beside the frozen head what the network's own last blocks gain from the labels.

The network is cut where its exit flow begins (the input of block13_sepconv1_act, 19x19x728
per crop). The bottom stays frozen and runs once per labelled crop; the top (blocks 13 and
14, 6.8 million weights) then learns on those activations, shared by a frame's two squares,
under the frozen head's own layers (its standardization and weights), so training starts
exactly where the frozen head is. Batch normalization keeps its ImageNet statistics
(inference mode): with a few dozen frames, new batch statistics would be noise.

Only the comparison is kept: the fine-tuned network is not used to tag the collection, which
would mean describing every frame again with it.
"""
import numpy as np

from workers.pipeline.features import CROP
from workers.pipeline.tagger import scores

SPLIT = "block13_sepconv1_act"  # the first layer of the exit flow: everything from here on learns
EPOCHS = 8
LEARNING_RATE = 1e-4
MAX_FRAMES = 200  # labelled frames the top learns from (their activations stay in memory: ~4 MB a frame)


def _xception(weights):
    import keras

    if weights == "random":
        keras.utils.set_random_seed(0)  # the same random network as workers/pipeline/xception_keras.py
    return keras.applications.Xception(include_top=False, weights=None if weights == "random" else weights,
                                       pooling="avg", input_shape=(CROP, CROP, 3))


def _activations(bottom, frames, progress):
    """The bottom's output for each frame's left and right square: two (n, 19, 19, 728) arrays."""
    from workers.pipeline.images import left_and_right_squares

    left, right = [], []
    for done, frame in enumerate(frames, 1):
        crops = np.stack(left_and_right_squares(np.asarray(frame), CROP)).astype(np.float32) / 127.5 - 1.0
        out = bottom(crops, training=False).numpy().astype(np.float16)
        left.append(out[0])
        right.append(out[1])
        progress(done / len(frames))
    return np.stack(left), np.stack(right)


def fine_tune(frames, targets, held, head, weights, seed=0, epochs=EPOCHS, progress=None):
    """Fine-tune the top blocks with `head` (a workers.pipeline.tagger.Head trained on the
    frames outside `held`) on the frames outside `held`, and score it on the held-out ones.
    `frames`: the labelled frames' pixels (any sizes); `targets`: their class indexes."""
    import keras
    from sklearn.utils.class_weight import compute_class_weight

    report = progress or (lambda f: None)
    rng = np.random.default_rng(seed)
    training = np.flatnonzero(~held)
    if len(training) > MAX_FRAMES:
        training = np.sort(rng.choice(training, MAX_FRAMES, replace=False))
    chosen = np.concatenate([training, np.flatnonzero(held)])
    base = _xception(weights)
    bottom = keras.Model(base.input, base.get_layer(SPLIT).input)
    top = keras.Model(base.get_layer(SPLIT).input, base.output)
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    left, right = _activations(bottom, [frames[i] for i in chosen], lambda f: report(0.4 * f))

    shape = tuple(left.shape[1:])
    inputs = [keras.Input(shape), keras.Input(shape)]
    pooled = keras.layers.Concatenate()([top(inputs[0], training=False), top(inputs[1], training=False)])
    values = keras.layers.Normalization(mean=head.mean, variance=np.square(head.scale))(pooled)
    for depth, (weight, bias) in enumerate(head.layers):
        last = depth == len(head.layers) - 1
        dense = keras.layers.Dense(len(bias), activation=None if last else "relu")
        values = dense(values)
        dense.set_weights([weight, bias])
    model = keras.Model(inputs, values)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    learn = slice(0, len(training))
    present = np.unique(targets[training])
    weights_of = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=targets[training])))
    keras.utils.set_random_seed(seed)
    if epochs:
        model.fit([left[learn].astype(np.float32), right[learn].astype(np.float32)], targets[training],
                  epochs=epochs, batch_size=8, class_weight=weights_of, verbose=0, shuffle=True, callbacks=[
                      keras.callbacks.LambdaCallback(on_epoch_end=lambda e, _: report(0.4 + 0.55 * (e + 1) / epochs))])
    check = slice(len(training), None)
    logits = model.predict([left[check].astype(np.float32), right[check].astype(np.float32)], verbose=0)
    report(1.0)
    return {**scores(logits.argmax(axis=1), targets[held], head.classes), "epochs": epochs,
            "trained_frames": int(len(training))}
