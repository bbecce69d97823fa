"""The predict API: the tagger of a collection of three known kinds of generated video answers
for a photo, a video and a frame it has, in the shape other programs expect, through a real
predict worker process; bad uploads get a 400 that says why and leave nothing behind; and
the predict worker batches requests that arrive together."""
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings

from tests.conftest import ROOT, worker_env
from tests.media import ffmpeg, make_video
from tests.test_tagger import label_first_frames, media, train_tagger  # noqa: F401 (media: a fixture)
from workers import predictor as predict_worker


@pytest.fixture(scope="module")
def tagged(media, django_db_blocker):  # noqa: F811
    """The module's collection with a tagger trained from 3 frames of each video."""
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from tests.conftest import make_user

    collection, _ = media
    with django_db_blocker.unblock():
        key = Token.objects.get_or_create(user=make_user("predict-editor", "editor"))[0].key
        client = Client(headers={"Authorization": f"Token {key}"})
        collection.frame_labels.all().delete()
        label_first_frames(client, collection)
        train_tagger(client, collection)
        collection.refresh_from_db()
        yield collection


@pytest.fixture(scope="module")
def predictor_process():
    """`manage.py predictor`, as a deployment runs it, on the tests' DATA_DIR."""
    log = open(Path(settings.DATA_DIR) / "predictor-test.log", "wb")
    process = subprocess.Popen([sys.executable, "manage.py", "predictor"], cwd=ROOT, env=worker_env(),
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not predict_worker.listening(settings.PREDICT_ADDRESS):  # a socket file alone may be a dead one's
        assert process.poll() is None and time.monotonic() < deadline, "the predict worker did not start"
        time.sleep(0.2)
    yield process
    process.terminate()
    process.wait(timeout=30)
    log.close()


def still_photo(path, source, size="640x360"):
    ffmpeg("-f", "lavfi", "-i", f"{source}=size={size}", "-frames:v", "1", path)
    return path


def predict(client, collection, **fields):
    return client.post(f"/api/collections/{collection.pk}/predict/", fields)


def test_a_photo_gets_its_kind_in_the_api_shape(client, tagged, predictor_process, tmp_path):
    with open(still_photo(tmp_path / "bars.jpg", "smptebars"), "rb") as photo:
        answer = predict(client, tagged, file=photo)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    labels = {label.name: label.pk for label in tagged.labels.all()}
    assert [sorted(item) for item in body["data"]] == [["id", "name", "probability"]] * 3
    assert body["data"][0]["name"] == "bars" and body["data"][0]["id"] == str(labels["bars"])
    assert all(item["id"] == str(labels[item["name"]]) for item in body["data"])
    probabilities = [item["probability"] for item in body["data"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    assert body["kind"] == "photo" and body["tagger"]["version"] == tagged.tagger.version
    # The collection's most similar frames, with their places on the map: the bars videos'.
    assert len(body["nearest"]) == 5
    assert {"x", "y", "source", "time", "image"} <= set(body["nearest"][0]["frame"])
    assert body["nearest"][0]["frame"]["name"].startswith("bars")
    assert [n["distance"] for n in body["nearest"]] == sorted(n["distance"] for n in body["nearest"])


def test_a_video_gets_a_prediction_a_second_and_a_summary(client, tagged, predictor_process, tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=3, source="testsrc2")
    with open(video, "rb") as handle:
        body = predict(client, tagged, file=handle, top=1).json()
    assert body["kind"] == "video" and [s["time"] for s in body["seconds"]] == pytest.approx([0, 1, 2], abs=0.05)
    assert all(s["data"][0]["name"] == "pattern" and len(s["data"]) == 1 for s in body["seconds"])
    assert [item["name"] for item in body["data"]] == ["pattern"]


def test_a_frame_of_the_collection_is_answered_from_its_features(client, tagged):
    source = tagged.sources.get(path__endswith="fractal-a.mp4")
    answer = client.post(f"/api/collections/{tagged.pk}/predict/", {"source": source.pk, "timestamp": 1.0},
                         content_type="application/json")
    body = answer.json()
    assert answer.status_code == 200 and body["kind"] == "frame" and body["data"][0]["name"] == "fractal"
    assert len(body["data"]) == 3 and len(body["nearest"]) == 5
    assert all(abs(n["frame"]["time"] - 1.0) > 0.2 or n["frame"]["source"] != source.pk for n in body["nearest"])
    missing = client.post(f"/api/collections/{tagged.pk}/predict/", {"source": 10**9, "timestamp": 1.0},
                          content_type="application/json")
    assert missing.status_code == 404


def files_under(folder):
    return sorted(str(p) for p in Path(folder).rglob("*"))


def test_bad_uploads_get_a_clear_400_and_leave_nothing(client, tagged, predictor_process, tmp_path, settings):
    settings.PREDICT_MAX_UPLOAD_MB = 1
    settings.MAX_IMAGE_PIXELS = 100_000
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not media")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    (tmp_path / "huge.mp4").write_bytes(np.random.default_rng(0).bytes(1_200_000))
    still_photo(tmp_path / "wide.png", "testsrc2", size="800x600")
    from PIL import Image, PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * 3_000_000, zip=True)  # compresses to little, decompresses past Pillow's limit
    Image.new("RGB", (8, 8)).save(tmp_path / "text.png", pnginfo=text)
    expected = {"empty.jpg": "empty.jpg: empty file (0 bytes)", "notes.txt": "notes.txt: not a video or photo",
                "broken.jpg": "broken.jpg: not a readable image", "huge.mp4": "over the limit of 1 MB",
                "wide.png": "wide.png: image is larger than the limit of 100,000 pixels",
                "text.png": "text.png: not a readable image"}
    before, temporary = files_under(tagged.data_dir), files_under(tempfile.gettempdir())
    for name, reason in expected.items():
        with open(tmp_path / name, "rb") as handle:
            answer = predict(client, tagged, file=handle)
        assert answer.status_code == 400 and reason in json.dumps(answer.json()), (name, answer.content)
    assert files_under(tagged.data_dir) == before
    assert not [p for p in files_under(tempfile.gettempdir()) if p not in temporary and "explorer-predict-" in p]
    assert predict(client, tagged).json()["detail"] == "file: No file was submitted."
    assert client.post("/api/collections/999999/predict/", {"source": 1, "timestamp": 0},
                       content_type="application/json").status_code == 404


@pytest.mark.django_db
def test_a_collection_without_a_tagger_says_how_to_get_one(client, tmp_path):
    from explorer.models import Collection

    untrained = Collection.objects.create(name="untrained")
    with open(still_photo(tmp_path / "bars.jpg", "smptebars"), "rb") as handle:
        answer = predict(client, untrained, file=handle)
    assert answer.status_code == 400 and "has no tagger yet: label frames of at least two kinds" in \
        answer.json()["detail"]


def test_without_the_predict_worker_the_answer_says_how_to_start_it(client, tagged, settings, tmp_path):
    settings.PREDICT_ADDRESS = str(tmp_path / "nobody.sock")
    with open(still_photo(tmp_path / "bars.jpg", "smptebars"), "rb") as handle:
        answer = predict(client, tagged, file=handle)
    assert answer.status_code == 503 and "start it with `python manage.py predictor`" in answer.json()["detail"]


def test_viewers_may_predict_strangers_may_not(viewer_client, anonymous_client, tagged, predictor_process):
    url = f"/api/collections/{tagged.pk}/predict/"
    source = tagged.sources.first()
    asked = {"source": source.pk, "timestamp": 0.0}
    assert viewer_client.post(url, asked, content_type="application/json").status_code == 200
    assert anonymous_client.post(url, asked, content_type="application/json").status_code == 401


def test_the_predict_worker_batches_requests_that_arrive_together(tmp_path, monkeypatch):
    """Four clients at once: the first request holds the network; the three that arrive
    meanwhile go through together in one pass, and each gets its own crops' features."""
    from workers.pipeline import features

    released, calls = threading.Event(), []

    def network(crops):
        calls.append(len(crops))
        if len(calls) == 1:
            released.wait(30)
        return crops.reshape(len(crops), -1)[:, :8].astype(np.float32)

    monkeypatch.setattr(features, "load_xception", lambda weights, precision, models_dir=None: network)
    address = str(tmp_path / "p.sock")
    server = predict_worker.Predictor(address, "secret", "random")
    started = threading.Event()
    threading.Thread(target=server.serve, kwargs={"ready": started.set}, daemon=True).start()
    assert started.wait(10)
    crops = [np.full((2, 299, 299, 3), i, np.uint8) for i in range(4)]
    results = [None] * 4

    def ask(i):
        results[i] = predict_worker.describe(crops[i], "float32", address, "secret")

    import socket

    silent = socket.socket(socket.AF_UNIX)  # connects and says nothing: it must not hold up the others
    silent.connect(address)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    threads[0].start()
    while not calls:
        time.sleep(0.01)
    for thread in threads[1:]:
        thread.start()
    while server.waiting.qsize() < 3:
        time.sleep(0.01)
    released.set()
    for thread in threads:
        thread.join(10)
    assert calls == [2, 6] and server.batches == 2
    for i in range(4):
        np.testing.assert_array_equal(results[i], np.full((2, 8), i, np.float32))
    with pytest.raises(predict_worker.PredictorUnavailable, match="same DJANGO_SECRET_KEY"):
        predict_worker.describe(crops[0], "float32", address, "wrong secret")
    np.testing.assert_array_equal(predict_worker.describe(crops[1], "float32", address, "secret"), results[1])
    silent.close()
    server.close()

