"""The API fuzzed by schemathesis against its own OpenAPI schema, with all its checks
(response schema conformance, documented status codes and content types, schema-valid
data accepted and schema-violating data refused, unsupported methods, created resources
that can be read...), in all its phases (examples, coverage, fuzzing, stateful): a real
web server on the test database, a collection ingested and mapped by the real worker (and
tagged: a tagger trained on a few labels) so that requests reach real maps, sources, frames
and predictions, and an editor's headers (api_auth_headers).

schemathesis runs as its command line (`st run`) against the live server: its pytest
plugin cannot name tests under this pytest. The run is bounded (examples per operation,
stateful steps) and seeded, so it asks the same questions every time; FUZZ_SEED=random
asks new ones. On failure the assertion shows schemathesis's report, with a curl command
that reproduces each failure."""
import json
import os
from collections import Counter
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, running_web_server
from tests.fuzz_checks import POSTER_OPERATIONS

pytestmark = [pytest.mark.worker, pytest.mark.django_db]

MAX_EXAMPLES = 15  # per operation and phase
STATEFUL_STEPS = 30
# The fuzzer renders real posters and GIFs on the worker: small ones, quickly done.
SERVER_LIMITS = {"POSTER_MAX_PIXELS": "200000", "POSTER_MAX_CELLS": "400", "GIF_MAX_SECONDS": "2",
                 "GIF_MAX_WIDTH": "64", "GIF_MAX_FPS": "4"}
SCHEMATHESIS = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def fuzz_server(map_collection, django_db_blocker, request):
    """A web server of its own (small poster limits, its own log); after the run, the
    collections the fuzzer made are deleted once the jobs it started are done."""
    from explorer.models import Collection, Job

    with django_db_blocker.unblock():
        before = set(Collection.objects.values_list("pk", flat=True))
        Collection.objects.create(name="fuzz: no frames")
        train_a_tagger(map_collection)
        last_job = Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        # A server that requires login, as deployed: the fuzzer signs in with an editor's token.
        with running_web_server("fuzz-server.log", REQUIRE_LOGIN="true", DJANGO_SECRET_KEY="fuzz-" + "k" * 50,
                                **SERVER_LIMITS) as url:
            yield url
        started = time.monotonic()
        while Job.objects.exclude(status__in=Job.FINISHED).exists():  # trainings and posters it started
            assert time.monotonic() < started + 300, "jobs started by the fuzzer did not finish"
            time.sleep(0.5)
        jobs = Counter(Job.objects.filter(pk__gt=last_job).values_list("kind", flat=True))
        waited = time.monotonic() - started
        show(request, f"schemathesis started {dict(jobs)} job(s), all done {waited:.0f} s after the run")
        Collection.objects.exclude(pk__in=before).delete()


def train_a_tagger(map_collection):
    """A tagger of two labels (three frames of each of two videos), so that the predictions,
    their videos and the tagger's state answer with real data."""
    from explorer import labels
    from explorer.jobs import start_tagging
    from explorer.models import Job, LabelAction
    from tests.conftest import wait_for_job

    collection, sources = map_collection
    for name, source in (("scenes", sources["original.mp4"]), ("others", sources["other.mp4"])):
        frames = [(source.pk, int(f)) for f in labels.source_frames(source)[0][:3]]
        labels.apply(collection, frames, name, LabelAction.Kind.LABEL_FRAMES, f"labelled 3 frames as {name}")
    job = wait_for_job(start_tagging(collection), timeout=180)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.message)


def show(request, line):
    """A line in pytest's output, passed or failed: the counts of every run stay in CI's log."""
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        request.config.pluginmanager.get_plugin("terminalreporter").write_line(f"\n{line}")


def toml(value):
    """A TOML value: JSON's scalars and arrays are TOML's; tables are written inline."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)} = {toml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return json.dumps(value)


def fuzz_config(map_collection):
    """schemathesis.toml. Integers come from the mapped collection's ids and frame numbers
    half the time, numbers from its frames' places on the map a third of the time."""
    from explorer.served_maps import snapshot
    from explorer.models import Collection

    collection, sources = map_collection
    current = snapshot(collection)
    rows = range(0, len(current), 7)
    frames = {current.describe(row)["frame"] for row in rows}
    points = sorted({round(float(value), 4) for row in rows for value in current.layout[row]})
    ids = sorted({0, 1, collection.pk, *(source.pk for source in sources.values()), *frames})
    seed = os.environ.get("FUZZ_SEED", "1")
    settings = {
        **({} if seed == "random" else {"seed": int(seed)}),
        "hooks": "tests.fuzz_checks",
        "dictionaries": {"ids": {"values": ids}, "points": {"values": points}},
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "dictionaries": {
            "integer": {"dictionary": "ids", "probability": 0.5},
            "number": {"dictionary": "points", "probability": 0.3}}},
        # The coverage phase reads fields out of earlier responses into request bodies, and
        # schemathesis 4.32 takes the error body's `errors` for a field of the request: a body
        # it calls valid then has a field its schema does not (ST202 on ingest, ST201 on
        # collections). It reads real ids and frame numbers from the dictionaries instead.
        "phases": {"coverage": {"generate-duplicate-query-parameters": True,
                                "extra-data-sources": {"responses": False}},
                   "stateful": {"max-steps": STATEFUL_STEPS}},
    }
    lines = [f"{json.dumps(key)} = {toml(value)}" for key, value in settings.items()]
    # A poster whose every field is within its schema may still be impossible as a whole
    # (more pixels or cells than the server allows, a window beside the map): JSON Schema
    # cannot state a product of fields. Such a refusal is a 400 that names no field, which
    # tests/fuzz_checks.py holds it to.
    lines += ["[[operations]]", f"include-name = {toml(list(POSTER_OPERATIONS))}",
              'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]']
    # A file of labels is a binary part to the schema: what is inside (UTF-8, a header of
    # source,timestamp,label) it cannot state, and a file without them is refused (400).
    lines += ["[[operations]]", 'include-name = "POST /api/collections/{id}/labels/import/"',
              'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]']
    # A photo or video to tag is a binary part to the schema too: a file that is not one is
    # refused (400), as is a frame of a collection without a tagger yet.
    lines += ["[[operations]]", 'include-name = "POST /api/collections/{id}/predict/"',
              'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]']
    # A clip that its source does not have (past its end, or a source of another collection)
    # is a fact of the data, not of the schema: refused (400); so is a picture to take the
    # colours of that is not one.
    lines += ["[[operations]]", 'include-name = "POST /api/gifs/"',
              'checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]']
    # Each retraining of the map costs the worker half a minute, cutting out every frame a few
    # seconds: the fuzzer asks them of a collection without frames (409); they are tested elsewhere.
    for operation in ("POST /api/collections/{id}/train/", "POST /api/collections/{id}/cutouts/"):
        lines += ["[[operations]]", f"include-name = {json.dumps(operation)}",
                  f"parameters = {toml({'path.id': Collection.objects.get(name='fuzz: no frames').pk})}"]
    return "\n".join(lines) + "\n"


def test_the_api_keeps_the_promises_of_its_schema(fuzz_server, map_collection, api_auth_headers, tmp_path,
                                                  request):
    from django.conf import settings

    from tests.environment import TEST_LOGS

    config = tmp_path / "schemathesis.toml"
    config.write_text(fuzz_config(map_collection))
    command = [str(SCHEMATHESIS), "--config-file", str(config), "--no-color", "run", f"{fuzz_server}/api/openapi.json",
               "--checks", "all", "--workers", "1"]
    for name, value in api_auth_headers.items():
        command += ["--header", f"{name}: {value}"]
    # The server's request log (runserver writes every request to LOG_DIR/web.log; its
    # terminal, fuzz-server.log, shows only pages).
    server_log = settings.LOG_DIR / "web.log"
    logged_before = server_log.stat().st_size if server_log.exists() else 0
    # In tmp_path: what schemathesis writes beside itself (crash files) goes with it.
    result = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, timeout=1200)
    with open(server_log, "rb") as log:
        log.seek(logged_before)
        requests = len(re.findall(rb'"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|[A-Z]+) /', log.read()))
    cases = re.search(r"^\s*(\d+) generated.*$", result.stdout, re.MULTILINE)
    summary = (f"schemathesis: {requests} requests, {cases.group(0).strip() if cases else 'no summary'}; "
               f"exit {result.returncode}")
    report = TEST_LOGS / "schemathesis.txt"  # kept with the server's log when a test fails
    report.write_text(result.stdout + result.stderr)
    show(request, summary)
    assert result.returncode == 0, f"{summary}; the whole report is in {report}\n{result.stdout[-20000:]}"
    assert cases and requests > 20 * MAX_EXAMPLES, summary
