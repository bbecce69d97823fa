"""Quality report for the map, on real media with the real Xception weights.

For the same frames, in one run, it prints for each 2D layout:
  - trustworthiness (sklearn.manifold.trustworthiness, k=10) against the 256-d PCA space,
  - 10-NN accuracy in 2D, with each frame's video as its class (frames of one video
    should sit together), next to the same in 256-d,
  - the median 2D distance between consecutive frames of one video over that of
    random pairs (small: a video draws a path, not a scatter),
  - the seconds it took;
for PCA to 2D, t-SNE, and the autoencoder (the article's terms alone, with neighbour
triplets, and the product's default with the neighbourhood term); plus
the PCA's explained variance and, for the autoencoder, occupied cells of a 32x32
grid before and after the radial stretch. It saves a picture of the default
autoencoder's map (frame thumbnails at their places) before and after the stretch.

Frames and features are cached in the output folder, so re-runs that change only the
autoencoder take seconds. Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/quality_report.py [--every 5] [--epochs 60]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from workers.pipeline.arrays import open_array  # noqa: E402
from workers.pipeline.files import find_media, file_checksum  # noqa: E402
from workers.pipeline.sampling import MediaError, SamplingParams, sample_source  # noqa: E402

SHARED = ROOT.parent / "shared"


def collect_frames(media, out, every):
    """Sample every media file (cached); returns [(name, frames dir, n frames)]."""
    files, _ = find_media([media])
    sources = []
    for path in files:
        folder = out / "frames" / path.relative_to(media).as_posix().replace("/", "__")
        try:
            result = sample_source(path, folder, SamplingParams(every=every), file_checksum(path))
        except MediaError as exc:
            print(f"  skipped {exc}")
            continue
        sources.append((path.relative_to(media).as_posix(), folder, result.frames))
    return sources


def collect_features(sources, out, weights):
    """Xception features per source (cached as .npy beside the frames)."""
    from workers.pipeline.features import XceptionFeatures

    extractor = XceptionFeatures(weights=str(weights))
    rows, started, computed = [], time.perf_counter(), 0
    for name, folder, count in sources:
        cache = folder / "features.npy"
        if cache.exists():
            rows.append(np.load(cache))
            continue
        described = extractor.transform(open_array(folder, "frames"))
        np.save(cache, described)
        rows.append(described)
        computed += count
    seconds = time.perf_counter() - started
    if computed:
        print(f"features: {computed} frame(s) described in {seconds:.1f} s ({computed / seconds:.2f} frames/s)")
    return np.concatenate(rows).astype(np.float32)


def consecutive_ratio(xy, labels):
    same = labels[1:] == labels[:-1]
    steps = np.linalg.norm(xy[1:] - xy[:-1], axis=1)[same]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(xy), (2, 20000))
    return float(np.median(steps) / np.median(np.linalg.norm(xy[a] - xy[b], axis=1)))


def knn_accuracy(points, labels, k=10):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import cross_val_score

    return float(cross_val_score(KNeighborsClassifier(k), points, labels, cv=5).mean())


def thumbnails_picture(path, panels, sources, size=1100, thumb=(48, 27)):
    """Frames drawn at their map positions, one panel per layout, side by side."""
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (size * len(panels), size + 30), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    frames = [(folder, i) for _, folder, count in sources for i in range(count)]
    for panel, (title, xy) in enumerate(panels):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        scaled = (xy - lo) / np.maximum(hi - lo, 1e-9) * (size - thumb[0] - 20) + 10
        for (folder, i), (x, y) in zip(frames, scaled):
            image = Image.fromarray(np.asarray(open_array(folder, "frames")[i])).resize(thumb)
            canvas.paste(image, (panel * size + int(x), 30 + int(y)))
        draw.text((panel * size + 10, 8), title, fill=(230, 230, 230))
    canvas.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--weights", type=Path,
                        default=SHARED / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "quality")
    parser.add_argument("--every", type=int, default=5, help="keep one frame in EVERY (default 5)")
    parser.add_argument("--epochs", type=int, default=60)

    args = parser.parse_args()

    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, trustworthiness

    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch, occupied_cells
    from workers.pipeline.reduce import StreamingPCA

    args.out.mkdir(parents=True, exist_ok=True)
    sources = collect_frames(args.media, args.out, args.every)
    features = collect_features(sources, args.out, args.weights)
    labels = np.concatenate([np.full(count, i) for i, (_, _, count) in enumerate(sources)])
    print(f"{len(features)} frames from {len(sources)} files (1 in {args.every})")

    started = time.perf_counter()
    pca = StreamingPCA(256).fit([features], len(features))
    reduced = pca.transform(features)
    print(f"PCA 4096 -> 256: {pca.explained_variance_:.1%} of the variance kept ({time.perf_counter() - started:.1f} s)")
    print(f"10-NN accuracy in 256-d (class = video): {knn_accuracy(reduced, labels):.3f}")

    layouts = {}

    def timed(name, make):
        begin = time.perf_counter()
        layouts[name] = (np.asarray(make(), dtype=np.float64), time.perf_counter() - begin)

    timed("PCA to 2D", lambda: PCA(2).fit_transform(reduced))
    timed("t-SNE (scikit-learn)", lambda: TSNE(2, init="pca", random_state=0).fit_transform(reduced))
    variants = {
        # The article read plainly: reconstruction, regularizer and random triplets only.
        "autoencoder, article's terms": dict(neighborhood_weight=0.0, regularizer_weight=1.0),
        "autoencoder, article's + neighbour triplets": dict(neighborhood_weight=0.0, regularizer_weight=1.0,
                                                            triplets="neighbors"),
        "autoencoder, product default": {},  # + the neighbourhood (parametric t-SNE) term
    }
    for name, params in variants.items():
        model = TripletAutoencoder(input_dim=256, epochs=args.epochs, seed=0, **params)
        timed(name, lambda: model.fit(reduced).transform(reduced))
    default_name = "autoencoder, product default"
    default_codes = layouts[default_name][0]

    print(f"\n{'2D layout':34} {'trust@10':>9} {'10-NN acc':>9} {'consec/random':>13} {'seconds':>8}")
    for name, (xy, seconds) in layouts.items():
        trust = trustworthiness(reduced, xy, n_neighbors=10)
        print(f"{name:34} {trust:9.3f} {knn_accuracy(xy, labels):9.3f} {consecutive_ratio(xy, labels):13.3f}"
              f" {seconds:8.1f}")

    stretch = RadialStretch().fit(default_codes)
    stretched = stretch.transform(default_codes)
    raw = np.clip(default_codes / np.abs(default_codes).max(), -1, 1)
    print(f"\noccupied cells of 32x32 ({default_name}): {occupied_cells(raw)} before the stretch "
          f"(codes scaled to fill [-1, 1]), {occupied_cells(stretched)} after")
    print(f"trustworthiness after the stretch: {trustworthiness(reduced, stretched, n_neighbors=10):.3f}")
    picture = args.out / "layout.png"
    thumbnails_picture(picture, [("autoencoder codes", default_codes), ("after the radial stretch", stretched)],
                       sources)
    print(f"picture: {picture}")


if __name__ == "__main__":
    main()
