"""Quality report for the map, on real media with the real Xception weights.

For the same frames, in one run, it prints for each 2D layout:
  - trustworthiness@10 (sklearn.manifold.trustworthiness) against the 256-d PCA space:
    are the map's neighbours real neighbours?
  - continuity@10, the same with the roles swapped: are real neighbours kept together?
  - 10-NN accuracy in 2D (5-fold cross-validation), next to the same in 256-d; the class is
    each frame's file (a video, or a sign of the sign-language clips), or with
    `--classes folder` the first folder under --media (photos sorted into class folders);
    or, with `--generated N`, N generated videos (random walks) instead of media, each its class;
  - the median 2D distance between consecutive frames of one file over that of random
    pairs (small: a video draws a path, not a scatter);
  - how well the map keeps distance ratios: the Spearman correlation between the log
    ratios log(|A-B|^2 / |B-C|^2) of random triplets in 256-d and in 2D;
  - the seconds it took (for the autoencoder: its training, neighbour graph included);
for PCA to 2D, t-SNE, UMAP (umap-learn, from requirements-dev) and the autoencoder: the
article's terms alone, the product before the graph term (with parametric t-SNE's term),
the graph term with triplets, and the product's default; plus the PCA's explained
variance and, for the default, occupied cells of a 32x32 grid before and after the radial
stretch and the trustworthiness after it. It saves a picture of the default's map (frame
thumbnails at their places) before and after the stretch.

Every layout with a seed (t-SNE, UMAP, the autoencoders) is made with seeds 0..N-1
(--seeds, default 5) and reported as the median with the spread [min-max]: one seed's
result says little, since another seed, or another CPU's summation order, moves it
(tests/test_autoencoder.py tests properties on fixed inputs; the quality claims live here).

Frames and features are cached in the output folder, so re-runs that change only the
layouts take seconds. Run from the repository root (not a pytest test):

    .venv/bin/python tests/benchmarks/quality_report.py [--media DIR] [--classes file|folder]
        [--every 5] [--seeds 5] [--out DIR]
    .venv/bin/python tests/benchmarks/quality_report.py --generated 40   # no media or weights needed
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.media import generated_videos  # noqa: E402
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


def consecutive_ratio(xy, files):
    """None where no file has two frames (photos)."""
    same = files[1:] == files[:-1]
    if not same.any():
        return None
    steps = np.linalg.norm(xy[1:] - xy[:-1], axis=1)[same]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(xy), (2, 20000))
    return float(np.median(steps) / np.median(np.linalg.norm(xy[a] - xy[b], axis=1)))


def knn_accuracy(points, labels, k=10):
    import warnings

    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.model_selection import cross_val_score

    with warnings.catch_warnings():  # a video of fewer than 5 frames is in some folds only: fine here
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        return float(cross_val_score(KNeighborsClassifier(k), points, labels, cv=5).mean())


def thumbnails_picture(path, panels, sources, size=1100, thumb=(48, 27)):
    """Frames drawn at their map positions, one panel per layout, side by side."""
    from PIL import Image, ImageDraw

    from workers.pipeline.images import resize_area

    canvas = Image.new("RGB", (size * len(panels), size + 30), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    frames = [(folder, i) for _, folder, count in sources for i in range(count)]
    for panel, (title, xy) in enumerate(panels):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        scaled = (xy - lo) / np.maximum(hi - lo, 1e-9) * (size - thumb[0] - 20) + 10
        for (folder, i), (x, y) in zip(frames, scaled):
            image = Image.fromarray(resize_area(open_array(folder, "frames")[i], *thumb))  # as the map's tiles
            canvas.paste(image, (panel * size + int(x), 30 + int(y)))
        draw.text((panel * size + 10, 8), title, fill=(230, 230, 230))
    canvas.save(path)


def ratio_agreement(points, xy, triplets=20000):
    """Spearman correlation of the triplet log ratios in `points` and in `xy` (same triplets)."""
    from scipy.stats import spearmanr

    from workers.pipeline.map_losses import triplet_log_ratio

    a, b, c = np.random.default_rng(0).integers(0, len(points), (3, triplets))
    return float(spearmanr(triplet_log_ratio(points[a], points[b], points[c]),
                           triplet_log_ratio(xy[a], xy[b], xy[c]))[0])


def spread(values, digits=3):
    """'median [min-max]' of the values (one value: just it)."""
    if any(value is None for value in values):
        return "-"
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.median(values):.{digits}f} [{values.min():.{digits}f}-{values.max():.{digits}f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=SHARED / "media")
    parser.add_argument("--weights", default=None,
                        help="Xception weights: a .h5 file or 'imagenet' (default: ../shared's file if there, "
                             "else imagenet)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "quality")
    parser.add_argument("--every", type=int, default=5, help="keep one frame in EVERY (default 5)")
    parser.add_argument("--classes", choices=("file", "folder"), default="file",
                        help="a frame's class for the 10-NN accuracy: its file, or the first folder under --media")
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds per stochastic layout, reported as median [min-max] (default 5)")
    parser.add_argument("--generated", type=int, metavar="VIDEOS",
                        help="instead of media: this many generated videos of 60 frames (4096-d random walks, "
                             "each from its own start), each video its class; no weights or media needed")

    args = parser.parse_args()
    if not args.generated and not args.media.is_dir():
        parser.error(f"no media folder at {args.media}: pass --media FOLDER (videos or photos)")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    shared_weights = SHARED / "weights" / "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    weights = args.weights or (str(shared_weights) if shared_weights.exists() else "imagenet")

    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE, trustworthiness

    from workers.pipeline.autoencoder import TripletAutoencoder
    from workers.pipeline.layout import RadialStretch, occupied_cells
    from workers.pipeline.reduce import StreamingPCA

    args.out.mkdir(parents=True, exist_ok=True)
    if args.generated:
        sources = None
        features, files = generated_videos(args.generated)
        labels = files
        print(f"{len(features)} generated frames of {args.generated} videos (each its class); {args.seeds} seed(s) "
              "per stochastic layout, shown as median [min-max]")
    else:
        sources = collect_frames(args.media, args.out, args.every)
        features = collect_features(sources, args.out, weights)
        names = [name if args.classes == "file" else name.split("/")[0] for name, _, _ in sources]
        classes = {name: number for number, name in enumerate(dict.fromkeys(names))}
        labels = np.concatenate([np.full(count, classes[name]) for name, (_, _, count) in zip(names, sources)])
        files = np.concatenate([np.full(count, number) for number, (_, _, count) in enumerate(sources)])
        print(f"{len(features)} frames from {len(sources)} files (1 in {args.every}), {len(classes)} classes "
              f"(by {args.classes}); {args.seeds} seed(s) per stochastic layout, shown as median [min-max]")

    started = time.perf_counter()
    pca = StreamingPCA(256).fit([features], len(features))
    reduced = pca.transform(features)
    print(f"PCA 4096 -> 256: {pca.explained_variance_:.1%} of the variance kept "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"10-NN accuracy in 256-d: {knn_accuracy(reduced, labels):.3f}")

    seeds = range(args.seeds)
    layouts = {}  # name -> [(2D points, seconds) per seed]

    def timed(name, make):
        begin = time.perf_counter()
        xy = np.asarray(make(), dtype=np.float64)
        layouts.setdefault(name, []).append((xy, time.perf_counter() - begin))

    def umap(seed):
        import umap

        return umap.UMAP(random_state=seed, n_jobs=1).fit_transform(reduced)

    timed("PCA to 2D", lambda: PCA(2).fit_transform(reduced))  # no seed: one run
    for seed in seeds:
        timed("t-SNE (scikit-learn)", lambda: TSNE(2, init="pca", random_state=seed).fit_transform(reduced))
    for seed in seeds:
        timed("UMAP (umap-learn)", lambda: umap(seed))
    before = dict(graph_weight=0.0, triplets="random", triplet_weight=1.0, regularizer_weight=30.0,
                  neighbourhood_weight=10.0, batch_size=256, epochs=60)
    variants = {
        # The article read plainly: reconstruction, regularizer and random triplets only.
        "autoencoder, article's terms": {**before, "neighbourhood_weight": 0.0, "regularizer_weight": 1.0},
        "autoencoder before: + t-SNE term": before,
        "autoencoder, graph + triplets": dict(triplet_weight=1.0),
        "autoencoder, product default": {},  # the graph term (parametric UMAP)
    }
    for name, params in variants.items():
        for seed in seeds:
            model = TripletAutoencoder(input_dim=256, seed=seed, **params)
            timed(name, lambda: model.fit(reduced).transform(reduced))
    default_name = "autoencoder, product default"

    columns = ("trust@10", "contin@10", "10-NN acc", "consec/random", "ratio rho", "seconds")
    width = 21 if args.seeds > 1 else 9
    print(f"\n{'2D layout':36} " + " ".join(f"{c:>{width}}" for c in columns))
    for name, runs in layouts.items():
        figures = [[trustworthiness(reduced, xy, n_neighbors=10), trustworthiness(xy, reduced, n_neighbors=10),
                    knn_accuracy(xy, labels), consecutive_ratio(xy, files), ratio_agreement(reduced, xy), seconds]
                   for xy, seconds in runs]
        print(f"{name:36} " + " ".join(f"{spread(column, 1 if i == 5 else 3):>{width}}"
                                       for i, column in enumerate(zip(*figures))), flush=True)

    cells_before, cells_after, trust_after = [], [], []
    for codes, _ in layouts[default_name]:
        stretched = RadialStretch().fit_transform(codes)
        cells_before.append(occupied_cells(np.clip(codes / np.abs(codes).max(), -1, 1)))
        cells_after.append(occupied_cells(stretched))
        trust_after.append(trustworthiness(reduced, stretched, n_neighbors=10))
    print(f"\noccupied cells of 32x32 ({default_name}): {spread(cells_before, 0)} before the stretch "
          f"(codes scaled to fill [-1, 1]), {spread(cells_after, 0)} after")
    print(f"trustworthiness after the stretch: {spread(trust_after)}")
    default_codes = layouts[default_name][0][0]
    if sources is None:
        return
    picture = args.out / "layout.png"
    thumbnails_picture(picture, [("autoencoder codes (seed 0)", default_codes),
                                 ("after the radial stretch", RadialStretch().fit_transform(default_codes))], sources)
    print(f"picture: {picture}")


if __name__ == "__main__":
    main()
