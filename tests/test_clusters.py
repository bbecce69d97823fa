"""Clusters and labels end to end: the real worker clusters generated media with known groups
(three videos, each its own lavfi source), the API names clusters, frames and videos, labels
survive a re-clustering, merges and splits are undone, labels go out and back in as CSV and
JSON, and bad requests get a clear answer."""
import csv
import io
import json
import subprocess
import sys

import pytest
from sklearn.metrics import adjusted_rand_score

from explorer.jobs import start_ingest
from explorer.models import Collection, FrameLabel, Job, LabelAction
from explorer.sampling_settings import sampling_params
from tests.conftest import ROOT, wait_for_job, worker_env
from tests.media import make_video

VIDEOS = {"bars.mp4": "smptebars", "fractal.mp4": "mandelbrot", "pattern.mp4": "testsrc2"}


@pytest.fixture(scope="module")
def ingested(worker, media_root, django_db_blocker):
    """The three videos, ingested once for the module (and deleted after it)."""
    folder = media_root / "clusters"
    for name, source in VIDEOS.items():
        make_video(folder / name, seconds=4, source=source)
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="clusters", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        yield collection
        collection.delete()


@pytest.fixture
def grouped(ingested, django_db_blocker):
    """The collection without labels, and its sources by file name. The test runs outside a
    transaction (as the worker does): its writes are committed at once, so the worker never
    waits for a test's lock, and it sees the worker's."""
    with django_db_blocker.unblock():
        collection = Collection.objects.get(pk=ingested.pk)
        collection.label_actions.all().delete()
        collection.frame_labels.all().delete()
        yield collection, {s.path.rsplit("/", 1)[1]: s for s in collection.sources.all()}


def recluster(client, collection, **params):
    response = client.post(f"/api/collections/{collection.pk}/clusters/", params, content_type="application/json")
    assert response.status_code == 202, response.content
    job = wait_for_job(Job.objects.get(pk=response.json()["id"]))
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job


def members(client, collection, cluster):
    """(source, frame) of every member of a cluster, in the API's order."""
    found, page = [], 1
    while True:
        body = client.get(f"/api/collections/{collection.pk}/clusters/{cluster}/?page={page}&page_size=200").json()
        found += [(m["frame"]["source"], m["frame"]["frame"]) for m in body["members"]]
        if page >= body["pages"]:
            return found
        page += 1


def cluster_of_each_frame(client, collection):
    clusters = client.get(f"/api/collections/{collection.pk}/clusters/").json()["clusters"]
    return {frame: c["id"] for c in clusters for frame in members(client, collection, c["id"])}


def label_of_each_frame(collection):
    return {(s, f): name for s, f, name in FrameLabel.objects.filter(collection=collection).values_list(
        "source_id", "frame", "label__name")}


def test_the_clusters_recover_the_known_groups(client, grouped):
    collection, sources = grouped
    # An ingest clusters its new map by itself, with the default settings.
    ingest = collection.jobs.get(kind=Job.Kind.INGEST)
    assert "cluster(s)" in ingest.message
    first = collection.clusterings.order_by("id").first()
    assert first.job == ingest and first.params == {"method": "auto", "over": "clips"}

    video_of = {s.pk: name for name, s in sources.items()}

    def videos_and_clusters():
        found = cluster_of_each_frame(client, collection)
        return [video_of[s] for s, _ in sorted(found)], [found[f] for f in sorted(found)]

    # Not told how many: no cluster mixes two videos (a video may come in parts: its frames
    # move, and the map of random weights tells the parts apart).
    recluster(client, collection, method="auto", over="frames")
    videos, clusters = videos_and_clusters()
    videos_in = {c: {v for v, of in zip(videos, clusters) if of == c} for c in set(clusters)}
    assert all(len(found) == 1 for found in videos_in.values()) and len(videos_in) <= 6, videos_in
    recluster(client, collection, method="kmeans", k=3, over="frames")
    assert adjusted_rand_score(*videos_and_clusters()) == pytest.approx(1.0)

    body = client.get(f"/api/collections/{collection.pk}/clusters/").json()
    assert body["clustering"]["clusters"] == 3 and body["clustering"]["current_map"]
    for cluster in body["clusters"]:
        page = client.get(f"/api/collections/{collection.pk}/clusters/{cluster['id']}/").json()
        assert page["count"] == cluster["size"]
        # the exemplar is a member, and the members come nearest the exemplar first, outliers last
        rows = [m["frame"]["row"] for m in page["members"]]
        assert cluster["exemplar"]["row"] in rows
        keys = [(m["outlier"], m["distance"]) for m in page["members"]]
        assert keys == sorted(keys)
        x, y = cluster["centre"]
        assert -1 <= x <= 1 and -1 <= y <= 1 and len(cluster["outline"]) >= 3


def test_labels_belong_to_frames_and_survive_a_reclustering(client, grouped):
    collection, sources = grouped
    recluster(client, collection, method="kmeans", k=3, over="frames")
    bars = sources["bars.mp4"].pk
    found = cluster_of_each_frame(client, collection)
    bars_cluster = next(c for (s, _), c in found.items() if s == bars)

    response = client.post(f"/api/collections/{collection.pk}/labels/",
                           {"label": "colour bars", "cluster": bars_cluster}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["who"] == "test-editor" and response.json()["frames"] == sources["bars.mp4"].frame_count
    before = label_of_each_frame(collection)
    assert set(before) == {f for f in found if f[0] == bars} and set(before.values()) == {"colour bars"}

    recluster(client, collection, method="kmeans", k=2, over="frames")  # bars now share a cluster with another video
    assert label_of_each_frame(collection) == before
    clusters = client.get(f"/api/collections/{collection.pk}/clusters/").json()["clusters"]
    holding = [c for c in clusters if c["labelled"]]
    assert len(holding) == 1 and holding[0]["label"] == "colour bars"
    assert holding[0]["label_frames"] == sources["bars.mp4"].frame_count

    # a whole video, then chosen frames relabelled, then unlabelled
    fractal = sources["fractal.mp4"]
    response = client.post(f"/api/collections/{collection.pk}/labels/", {"label": "fractal", "source": fractal.pk},
                           content_type="application/json")
    assert response.json()["frames"] == fractal.frame_count
    two = sorted(f for f in found if f[0] == fractal.pk)[:2]
    client.post(f"/api/collections/{collection.pk}/labels/", {"label": "zoom", "frames": [list(f) for f in two]},
                content_type="application/json")
    client.post(f"/api/collections/{collection.pk}/labels/", {"label": None, "frames": [list(two[0])]},
                content_type="application/json")
    now = label_of_each_frame(collection)
    assert two[0] not in now and now[two[1]] == "zoom"
    page = client.get(f"/api/collections/{collection.pk}/clusters/{found_cluster(client, collection, two[1])}/"
                      "?page_size=200").json()
    shown = {(m["frame"]["source"], m["frame"]["frame"]): m["label"] for m in page["members"]}
    assert shown[two[1]] == "zoom" and shown[two[0]] is None

    # undo walks back one action at a time
    for expected in ("zoom", "fractal"):
        assert undo(client, collection).status_code == 200
        assert label_of_each_frame(collection).get(two[0]) == expected
    assert undo(client, collection).status_code == 200
    assert label_of_each_frame(collection) == before


def undo(client, collection):
    return client.post(f"/api/collections/{collection.pk}/labels/undo/", {}, content_type="application/json")


def found_cluster(client, collection, frame):
    return cluster_of_each_frame(client, collection)[frame]


def test_merge_and_split_are_jobs_and_undo_goes_back(client, grouped, media_root):
    collection, sources = grouped
    recluster(client, collection, method="kmeans", k=3, over="frames")
    collection.refresh_from_db()
    three = collection.clustering
    client.post(f"/api/collections/{collection.pk}/labels/", {"label": "bars", "source": sources["bars.mp4"].pk},
                content_type="application/json")
    response = client.post(f"/api/collections/{collection.pk}/clusters/merge/", {"clusters": [0, 2]},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    assert wait_for_job(Job.objects.get(pk=response.json()["id"])).status == Job.Status.SUCCEEDED
    collection.refresh_from_db()
    merged = collection.clustering
    assert merged.clusters == 2 and merged.parent == three
    action = collection.label_actions.first()
    assert action.kind == LabelAction.Kind.MERGE and action.who == "test-editor"

    # An ingest that finds nothing new leaves the map, and so its clusters and their merge, as they are.
    again = wait_for_job(start_ingest(collection, [media_root / "clusters"]))
    assert again.status == Job.Status.SUCCEEDED, again.error
    collection.refresh_from_db()
    assert collection.clustering == merged

    response = client.post(f"/api/collections/{collection.pk}/clusters/0/split/", {"k": 2},
                           content_type="application/json")
    assert wait_for_job(Job.objects.get(pk=response.json()["id"])).status == Job.Status.SUCCEEDED
    collection.refresh_from_db()
    assert collection.clustering.clusters == 3 and collection.clustering.parent == merged

    for expected in (merged, three):
        assert undo(client, collection).status_code == 200
        collection.refresh_from_db()
        assert collection.clustering == expected

    # numbers of a clustering that is no longer current are refused, not applied to other frames
    response = client.post(f"/api/collections/{collection.pk}/clusters/merge/", {"clusters": [0, 1]},
                           content_type="application/json")
    assert wait_for_job(Job.objects.get(pk=response.json()["id"])).status == Job.Status.SUCCEEDED
    recluster(client, collection, method="kmeans", k=2, over="frames")
    for url, body in (("clusters/merge/", {"clusters": [0, 1]}), ("clusters/0/split/", {"k": 2}),
                      ("labels/", {"label": "x", "cluster": 0})):
        response = client.post(f"/api/collections/{collection.pk}/{url}", {**body, "clustering": three.pk},
                               content_type="application/json")
        assert response.status_code == 409 and "made again since" in response.json()["detail"], url
    # That last merge, of the clusters before, has nothing left to undo: undo goes on to the
    # labelling before it.
    assert undo(client, collection).json()["kind"] == LabelAction.Kind.LABEL_VIDEO
    assert not FrameLabel.objects.filter(collection=collection).exists()


def test_labels_go_out_and_back_in(client, grouped, tmp_path):
    collection, sources = grouped
    recluster(client, collection, method="kmeans", k=3, over="frames")
    for name, label in (("bars.mp4", "bars"), ("pattern.mp4", "pattern")):
        client.post(f"/api/collections/{collection.pk}/labels/", {"label": label, "source": sources[name].pk},
                    content_type="application/json")
    labelled = label_of_each_frame(collection)
    exported = client.get(f"/api/collections/{collection.pk}/labels/export/").content.decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert len(rows) == len(labelled) and {r["label"] for r in rows} == {"bars", "pattern"}
    as_json = client.get(f"/api/collections/{collection.pk}/labels/export/?format=json").json()
    assert [(r["source"], r["label"]) for r in as_json] == [(r["source"], r["label"]) for r in rows]

    FrameLabel.objects.filter(collection=collection).delete()
    # by file name (not path), plus rows that cannot be applied
    lines = ["source,timestamp,label"] + [f"{r['source'].rsplit('/', 1)[1]},{r['timestamp']},{r['label']}"
                                         for r in rows]
    lines += ["missing.mp4,1.0,x", "bars.mp4,later,x", "bars.mp4,99,x", "bars.mp4,0.5,"]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "labels.csv"
    response = client.post(f"/api/collections/{collection.pk}/labels/import/", {"file": upload})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["labelled"] == len(rows)
    reasons = {row["source"] + " " + str(row["timestamp"]): row["reason"] for row in body["skipped"]}
    assert len(reasons) == 4
    assert "no such file" in reasons["missing.mp4 1.0"] and "not a number" in reasons["bars.mp4 later"]
    assert "long" in reasons["bars.mp4 99"] and "needs a name" in reasons["bars.mp4 0.5"]
    assert label_of_each_frame(collection) == labelled
    # a file of two labels is one action: one undo takes it all back
    assert undo(client, collection).json()["kind"] == LabelAction.Kind.IMPORT
    assert label_of_each_frame(collection) == {}
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "labels.csv"
    assert client.post(f"/api/collections/{collection.pk}/labels/import/", {"file": upload}).json()["labelled"] \
        == len(rows)

    # the timestamp picks the nearest sampled frame; undo takes an import back
    fractal = sources["fractal.mp4"]
    upload = io.BytesIO(json.dumps([{"source": fractal.path, "timestamp": 1.4, "label": "near"}]).encode())
    upload.name = "labels.json"
    assert client.post(f"/api/collections/{collection.pk}/labels/import/", {"file": upload}).json()["labelled"] == 1
    near = [f for (s, f), name in label_of_each_frame(collection).items() if name == "near"]
    assert near == [40]  # frames 0, 10, 20... at 30 fps: 1.4 s is nearest frame 40 (1.33 s)
    undo(client, collection)
    assert label_of_each_frame(collection) == labelled

    # the command line: export, import, and `export` with the cluster and label columns
    out = tmp_path / "labels.json"
    run("labels", collection.name, "--export", out)
    assert len(json.loads(out.read_text())) == len(labelled)
    FrameLabel.objects.filter(collection=collection).delete()
    result = run("labels", collection.name, "--import", out)
    assert f"{len(labelled)} frame(s) labelled" in result.stdout
    assert label_of_each_frame(collection) == labelled
    table = list(csv.DictReader(io.StringIO(run("export", collection.name, "--csv", "-").stdout)))
    found = cluster_of_each_frame(client, collection)
    for row in table:
        key = (int(row["source_id"]), int(row["frame"]))
        assert int(row["cluster"]) == found[key] and row["label"] == labelled.get(key, "")


def run(*args):
    result = subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=ROOT, env=worker_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_the_cluster_command_prints_the_clusters(grouped):
    collection, _ = grouped
    result = run("cluster", collection.name, "--method", "kmeans", "--k", "2", "--over", "frames")
    assert "2 cluster(s) of" in result.stdout and "cohesion" in result.stdout
    refused = subprocess.run([sys.executable, "manage.py", "cluster", collection.name, "--method", "kmeans",
                              "--k", "500"], cwd=ROOT, env=worker_env(), capture_output=True, text=True)
    assert refused.returncode != 0 and "cannot make 500 clusters of a map of" in refused.stderr


def test_bad_requests_get_a_clear_answer(client, viewer_client, grouped):
    collection, _ = grouped
    api = f"/api/collections/{collection.pk}"
    response = client.post(f"{api}/clusters/", {"method": "kmeans", "k": 10_000}, content_type="application/json")
    assert response.status_code == 409 and "cannot make 10000 clusters" in response.json()["detail"]
    response = client.post(f"{api}/clusters/", {"method": "kmeans", "k": 0}, content_type="application/json")
    assert response.status_code == 400 and "k" in response.json()["errors"]
    assert client.post(f"{api}/clusters/merge/", {"clusters": [0, 99]},
                       content_type="application/json").status_code == 404
    assert client.get(f"{api}/clusters/99/").status_code == 404
    assert client.get(f"{api}/clusters/0/?page=99").status_code == 404
    bars = collection.sources.get(path__endswith="bars.mp4").pk
    response = client.post(f"{api}/labels/", {"label": "x", "frames": [[bars, 0], [bars, 5]]},
                           content_type="application/json")
    assert response.status_code == 404 and f"frame 5 of source {bars} was not sampled" in response.json()["detail"]
    response = client.post(f"{api}/labels/", {"label": "x", "cluster": 0, "source": 1}, content_type="application/json")
    assert response.status_code == 400 and "exactly one" in response.content.decode()
    response = client.post(f"{api}/labels/", {"label": "  ", "cluster": 0}, content_type="application/json")
    assert response.status_code == 400 and "other than spaces" in response.content.decode()
    upload = io.BytesIO(b"name,when\nx,1\n")
    upload.name = "bad.csv"
    response = client.post(f"{api}/labels/import/", {"file": upload})
    assert response.status_code == 400 and "source,timestamp,label" in response.content.decode()
    # labelling is an editor's action; looking is a viewer's
    assert viewer_client.get(f"{api}/clusters/").status_code == 200
    for url, body in ((f"{api}/labels/", {"label": "x", "cluster": 0}), (f"{api}/labels/undo/", {}),
                      (f"{api}/clusters/", {}), (f"{api}/clusters/merge/", {"clusters": [0, 1]})):
        assert viewer_client.post(url, body, content_type="application/json").status_code == 403
    assert not LabelAction.objects.filter(collection=collection).exists()
    assert client.post(f"{api}/labels/undo/", {}, content_type="application/json").status_code == 409  # nothing to undo


@pytest.mark.django_db
def test_no_map_no_clusters(client):
    collection = Collection.objects.create(name="empty")
    response = client.get(f"/api/collections/{collection.pk}/clusters/")
    assert response.status_code == 409 and "no clusters yet" in response.json()["detail"]
    response = client.post(f"/api/collections/{collection.pk}/clusters/", {}, content_type="application/json")
    assert response.status_code == 409 and "no map" in response.json()["detail"]
