"""The tagger: the head on fixed arrays (it is the logistic regression it says, it learns
separable classes, it validates by whole videos, it asks for the labels it lacks), then end
to end on generated media of three known classes, two videos each: the real worker trains
it from a few labelled frames, tags every other frame of the map and every frame a later
ingest adds, and the API, the command line and the export show it."""
import csv
import io
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from explorer.jobs import start_ingest
from explorer.models import Collection, FrameLabel, Job
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import make_video
from workers.pipeline.arrays import open_array
from workers.pipeline.tagger import Head, TaggerError, check_labels, fit_head, split_by_video, train


def blobs(per_class=20, classes=3, width=64, spread=0.3):
    """Fixed, well-separated classes: (features, names, videos of 4 frames each)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(classes, width))
    features = np.concatenate([c + spread * rng.normal(size=(per_class, width)) for c in centres])
    names = np.repeat([f"class {i}" for i in range(classes)], per_class)
    return features.astype(np.float32), names, np.arange(len(names)) // 4


def test_missing_labels_are_named_with_how_many_more():
    with pytest.raises(TaggerError, match="no frame is labelled yet"):
        check_labels({})
    with pytest.raises(TaggerError, match=r"only one label \('goal', 9 frame\(s\)\).*at least 2 frames of at least "
                                          "one other kind"):
        check_labels({"goal": 9})
    with pytest.raises(TaggerError, match=r"'crowd' has 1 frame\(s\): label 1 more"):
        check_labels({"goal": 9, "crowd": 1})
    check_labels({"goal": 2, "crowd": 2})


def test_validation_holds_out_whole_videos_and_keeps_every_label_in_training():
    # Label "a": 3 videos; "b": 2 videos; "c": one video (it can never be validated).
    videos = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6])
    labels = np.array(["a", "a", "a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "c"])
    for seed in range(20):
        held = split_by_video(labels, videos, share=0.3, seed=seed)
        assert held.any()
        for video in np.unique(videos):
            assert len(set(held[videos == video])) == 1  # a video is on one side only
        for label in ("a", "b", "c"):
            assert (~held & (labels == label)).any()  # every label keeps training frames
        assert not held[labels == "c"].any()
    # Every frame its own video (photos): frames are held out one by one, about the share asked.
    held = split_by_video(np.repeat(["a", "b"], 50), np.arange(100), share=0.2, seed=0)
    assert held.sum() == 20


def test_the_softmax_head_is_the_class_weighted_logistic_regression():
    features, names, _ = blobs()
    for classes in (2, 3):
        keep = np.isin(names, [f"class {i}" for i in range(classes)])
        chosen, kinds = features[keep], sorted(set(names[keep]))
        head = fit_head(chosen, np.searchsorted(kinds, names[keep]), kinds)
        scaled = StandardScaler().fit(chosen)
        reference = LogisticRegression(class_weight="balanced", max_iter=2000).fit(scaled.transform(chosen),
                                                                                    names[keep])
        np.testing.assert_allclose(head.probabilities(chosen), reference.predict_proba(scaled.transform(chosen)),
                                   atol=1e-5)


def test_heads_learn_separable_classes_and_survive_a_round_trip(tmp_path):
    features, names, videos = blobs()
    for kind in ("softmax", "dense"):
        head, report = train(features, names, videos, kind=kind)
        assert report["validation"]["accuracy"] == 1.0 and report["unvalidated"] == []
        probabilities = head.probabilities(features)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        assert [head.classes[i] for i in probabilities.argmax(axis=1)] == list(names)
        head.save(tmp_path / f"{kind}.npz")
        again = Head.load(tmp_path / f"{kind}.npz")
        assert again.classes == head.classes and again.kind == kind
        np.testing.assert_array_equal(again.probabilities(features), probabilities)


def test_a_label_with_few_frames_is_not_drowned_by_a_large_one():
    # Two overlapping classes, 200 frames against 10: the weighted head still finds most of the
    # small one on fresh frames, where an unweighted one gives nearly everything to the large.
    rng = np.random.default_rng(3)
    centres = np.zeros((2, 16))
    centres[1, 0] = 2.0
    features = np.concatenate([centres[0] + rng.normal(size=(200, 16)), centres[1] + rng.normal(size=(10, 16))])
    targets = np.repeat([0, 1], [200, 10])
    fresh = centres[1] + rng.normal(size=(500, 16))
    head = fit_head(features, targets, ["large", "small"])
    weighted_recall = np.mean(head.probabilities(fresh).argmax(axis=1) == 1)
    scaled = StandardScaler().fit(features)
    plain = LogisticRegression(max_iter=2000).fit(scaled.transform(features), targets)
    plain_recall = np.mean(plain.predict(scaled.transform(fresh)) == 1)
    assert weighted_recall > 0.6 > plain_recall


def test_fine_tuning_starts_exactly_where_the_frozen_head_is():
    """Cut at the exit flow and put back under the frozen head, the network untrained for a
    single step predicts what the frozen head predicts from the stored features."""
    from workers.pipeline.features import XceptionFeatures
    from workers.pipeline.fine_tune import fine_tune
    from workers.pipeline.tagger import evaluate

    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 255, 160)
    kinds = [np.broadcast_to(ramp[None, :, None], (90, 160, 3)),  # left to right
             np.broadcast_to(ramp[:90, None, None], (90, 160, 3)),  # top to bottom
             np.broadcast_to(((np.arange(160) // 8) % 2 * 255)[None, :, None], (90, 160, 3))]  # stripes
    frames = np.stack([np.clip(kinds[k] + rng.normal(0, 20, (90, 160, 3)), 0, 255)
                       for k in range(3) for _ in range(8)]).astype(np.uint8)
    targets = np.repeat([0, 1, 2], 8)
    videos = np.arange(24) // 2
    features = XceptionFeatures("random", batch_size=8, precision="float32").transform(frames).astype(np.float32)
    held = split_by_video(targets, videos, share=0.25, seed=0)
    head = fit_head(features[~held], targets[~held], ["a", "b", "c"])
    frozen = evaluate(head, features[held], targets[held])
    untouched = fine_tune(frames, targets, held, head, "random", epochs=0)  # training: the end-to-end test
    assert untouched["confusion"] == frozen["confusion"] and untouched["frames"] == held.sum()
    assert untouched["trained_frames"] == (~held).sum()


# --- end to end ---

VIDEOS = {"bars-sd.mp4": ("smptebars", ()), "bars-hd.mp4": ("smptehdbars", ()),
          "pattern-a.mp4": ("testsrc", ()), "pattern-b.mp4": ("testsrc2", ()),
          "fractal-a.mp4": ("mandelbrot", ()), "fractal-b.mp4": ("mandelbrot", ("-vf", "hflip,hue=h=60"))}
LABELLED_PER_VIDEO = 3


def kind_of(path):
    return path.rsplit("/", 1)[1].split("-")[0]


@pytest.fixture(scope="module")
def media(worker, media_root, django_db_blocker):
    """Six videos of three kinds, ingested once for the module (and deleted after it)."""
    folder = media_root / "tagger"
    for name, (source, extra) in VIDEOS.items():
        make_video(folder / name, seconds=4, source=source, extra=extra)
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="tagger", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        yield collection, media_root
        collection.delete()


@pytest.fixture
def unlabelled(media, django_db_blocker):
    with django_db_blocker.unblock():
        collection = Collection.objects.get(pk=media[0].pk)
        collection.label_actions.all().delete()
        collection.frame_labels.all().delete()
        yield collection


def sampled_frames(source):
    return [int(f) for f in open_array(source.frames_dir, "index")["frame"]]


def label(client, collection, name, frames):
    response = client.post(f"/api/collections/{collection.pk}/labels/", {"label": name, "frames": frames},
                           content_type="application/json")
    assert response.status_code == 200, response.content


def label_first_frames(client, collection):
    for source in collection.sources.all():
        frames = sampled_frames(source)[:LABELLED_PER_VIDEO]
        label(client, collection, kind_of(source.path), [[source.pk, f] for f in frames])


def train_tagger(client, collection, **body):
    response = client.post(f"/api/collections/{collection.pk}/tagger/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]), timeout=180)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.message)
    return job


def manage(*args):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=worker_env(), capture_output=True,
                          text=True, timeout=300)


def test_the_tagger_learns_the_kinds_and_tags_every_frame(client, unlabelled, django_db_blocker):
    collection = unlabelled
    label_first_frames(client, collection)
    job = train_tagger(client, collection)
    assert "tagger 1 (softmax, 3 labels, 18 labelled frame(s))" in job.message
    assert "frame(s) tagged by tagger 1" in job.message

    state = client.get(f"/api/collections/{collection.pk}/tagger/").json()
    tagger = state["tagger"]
    assert tagger["classes"] == ["bars", "fractal", "pattern"] and tagger["in_use"] and state["needed"] == ""
    assert state["labelled"] == {"bars": 6, "fractal": 6, "pattern": 6}
    validation = tagger["validation"]
    # Held out by video: each held-out video brings all its labelled frames, none stays in training.
    assert validation["videos"] >= 1 and validation["frames"] == LABELLED_PER_VIDEO * validation["videos"]
    assert sum(row["frames"] for row in validation["per_label"]) == validation["frames"]
    assert np.array(validation["confusion"]).sum() == validation["frames"]

    # Every frame of the map has a prediction; the frames nobody labelled get their video's kind.
    out = manage("export", collection.name, "--csv", "-")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == sum(s.frame_count for s in collection.sources.all())
    unlabelled_rows = [row for row in rows if not row["label"]]
    assert len(unlabelled_rows) == len(rows) - 18
    assert all(row["predicted"] == kind_of(row["source"]) for row in rows)
    assert all(1 / 3 < float(row["probability"]) <= 1 for row in rows)

    # The command line trains a second version and prints its validation.
    out = manage("tag", collection.name, "--head", "dense", "--fine-tune")
    assert out.returncode == 0, out.stderr
    assert "Tagger 2 (dense head) learned 3 labels from 18 frame(s) of 6 video(s)." in out.stdout
    held_out = validation["frames"]
    assert (f"Fine-tuned top blocks of Xception (8 epochs on {18 - held_out} frame(s)), on the same held-out "
            "frames: accuracy") in out.stdout
    tuned = client.get(f"/api/collections/{collection.pk}/tagger/").json()["tagger"]["fine_tuned"]
    assert tuned["frames"] == held_out and np.array(tuned["confusion"]).sum() == held_out
    assert "Confusion (rows: label given, columns: predicted" in out.stdout
    versions = client.get(f"/api/collections/{collection.pk}/tagger/").json()["taggers"]
    assert [(t["version"], t["head"], t["in_use"]) for t in versions] == [(2, "dense", True), (1, "softmax", False)]


def test_too_few_labels_are_refused_with_how_many_more(client, unlabelled):
    collection = unlabelled
    url = f"/api/collections/{collection.pk}/tagger/"
    jobs_before = collection.jobs.count()
    answer = client.post(url, {}, content_type="application/json")
    assert answer.status_code == 409 and "no frame is labelled yet" in answer.json()["detail"]
    source = collection.sources.order_by("pk").first()
    frames = sampled_frames(source)
    label(client, collection, "bars", [[source.pk, f] for f in frames[:3]])
    answer = client.post(url, {}, content_type="application/json")
    assert answer.status_code == 409 and "only one label ('bars', 3 frame(s))" in answer.json()["detail"]
    label(client, collection, "crowd", [[source.pk, frames[3]]])
    answer = client.post(url, {}, content_type="application/json")
    assert answer.status_code == 409 and "'crowd' has 1 frame(s): label 1 more" in answer.json()["detail"]
    assert client.get(url).json()["needed"] == answer.json()["detail"]
    assert collection.jobs.count() == jobs_before
    out = manage("tag", collection.name)
    assert out.returncode != 0 and "'crowd' has 1 frame(s): label 1 more" in out.stderr


def test_training_needs_an_editor(viewer_client, anonymous_client, unlabelled):
    url = f"/api/collections/{unlabelled.pk}/tagger/"
    assert viewer_client.get(url).status_code == 200
    assert viewer_client.post(url, {}, content_type="application/json").status_code == 403
    assert anonymous_client.get(url).status_code in (401, 403)
    assert anonymous_client.post(url, {}, content_type="application/json").status_code in (401, 403)


def test_a_later_ingest_is_tagged_with_the_tagger_in_use(client, media, unlabelled, django_db_blocker):
    collection, media_root = unlabelled, media[1]
    label_first_frames(client, collection)
    train_tagger(client, collection)
    more = make_video(media_root / "tagger-more" / "pattern-c.mp4", seconds=4, source="testsrc2", size="256x144")
    job = wait_for_job(start_ingest(collection, [more.parent]), timeout=300)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
    assert "frame(s) tagged by tagger" in job.message
    collection.refresh_from_db()
    rows = list(csv.DictReader(io.StringIO(manage("export", collection.name, "--csv", "-").stdout)))
    new = [row for row in rows if row["source"] == str(more)]
    assert new and all(row["predicted"] == "pattern" for row in new)
    assert FrameLabel.objects.filter(collection=collection).count() == 18


@pytest.mark.django_db
def test_a_collection_without_a_map_has_no_tagger_to_train(client):
    collection = Collection.objects.create(name="empty")
    state = client.get(f"/api/collections/{collection.pk}/tagger/").json()
    assert state["tagger"] is None and state["taggers"] == [] and "no frame is labelled yet" in state["needed"]
    answer = client.post(f"/api/collections/{collection.pk}/tagger/", {}, content_type="application/json")
    assert answer.status_code == 409 and "has no map yet" in answer.json()["detail"]
    assert client.get("/api/collections/999999/tagger/").status_code == 404
