"""`manage.py explore`: ingest, then serve, print the map's address and open it."""
import json
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings

from tests.conftest import ROOT, free_port, worker_env
from tests.media import make_video


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_explore_ends_with_the_map_open_in_the_browser(worker, media_root, tmp_path):
    folder = media_root / "explore"
    make_video(folder / "clip.mp4", seconds=2)
    opened = tmp_path / "opened.txt"
    fake_browser = tmp_path / "browser.sh"  # what Python's webbrowser runs, given $BROWSER
    fake_browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    fake_browser.chmod(0o755)
    port = free_port()
    env = worker_env(BROWSER=str(fake_browser), DISPLAY=":0")
    log = tmp_path / "explore.log"
    with open(log, "wb") as out:
        explore = subprocess.Popen([sys.executable, "manage.py", "explore", str(folder), "--port", str(port),
                                    "--collection", "explore", "--every", "10"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "The map of" not in log.read_text():
            assert explore.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        printed = [line for line in log.read_text().splitlines() if line.startswith("The map of")][0]
        map_url = printed.split(": ", 1)[1]
        assert map_url.startswith(f"http://127.0.0.1:{port}/collections/") and map_url.endswith("/map/")
        page = urllib.request.urlopen(map_url, timeout=10).read().decode()
        assert "leaflet.js" in page and "map.js" in page
        state = json.load(urllib.request.urlopen(map_url.replace("/collections/", "/api/collections/"), timeout=10))
        assert state["ready"] and state["frames"] == 6
        deadline = time.monotonic() + 10
        while not opened.exists():
            assert time.monotonic() < deadline, "no browser was opened"
            time.sleep(0.2)
        assert opened.read_text().strip() == map_url
        # Off a terminal: a few lines, none redrawn. The server logs the page on the terminal,
        # and the polled JSON in its log file only.
        page_path, state_path = map_url.split(str(port), 1)[1], map_url.split(str(port), 1)[1].replace(
            "/collections/", "/api/collections/")
        web_log = settings.LOG_DIR / "web.log"
        deadline = time.monotonic() + 10
        while f"GET {state_path} " not in (web_log.read_text() if web_log.exists() else ""):
            assert time.monotonic() < deadline, "the request for the map's state is not in the web log"
            time.sleep(0.2)
        printed = log.read_text()
        assert f"GET {page_path} " in printed and "GET /api/" not in printed, printed
        assert "\r" not in printed and len(printed.splitlines()) < 40, printed
    finally:
        explore.terminate()  # SIGTERM to explore alone: it stops its server (and workers) itself
        explore.wait(timeout=30)
    time.sleep(1)
    with pytest.raises(OSError):
        urllib.request.urlopen(map_url, timeout=5)
