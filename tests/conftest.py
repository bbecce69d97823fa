"""Test set-up: a real Redis (127.0.0.1:6379, database 15), a real Celery worker
process, and the real test database (SQLite file, or PostgreSQL when DATABASE_URL
points there). The environment itself is set in tests/environment.py."""
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.environment import TEST_DATA, TEST_LOGS

ROOT = Path(__file__).resolve().parent.parent


# A test that uses one of these starts real processes: it is end to end, marked `worker`
# whether or not it says so, so that `-m "not worker"` leaves only the fast, pure-compute part.
END_TO_END_FIXTURES = {"worker", "spawn_worker", "web_server", "browser"}


# A test that uses one of these, or is marked django_db with a database, reads or writes the
# test database: marked `database`, so that a run on another database (.ci/run's PostgreSQL
# run) can leave out the tests that would only do again what they did (`-m database`).
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server"} | END_TO_END_FIXTURES


def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if END_TO_END_FIXTURES & fixtures:
            item.add_marker(pytest.mark.worker)
        django_db = item.get_closest_marker("django_db")
        if DATABASE_FIXTURES & fixtures or (django_db is not None and django_db.kwargs.get("databases") != []):
            item.add_marker(pytest.mark.database)
        if "browser" in fixtures:  # `-m "not browser"` where there is no Chromium to drive
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def media_root():
    return TEST_DATA / "media"


def worker_env(**overrides):
    """The environment for a worker process that sees the test database."""
    from django.db import connection

    env = dict(os.environ, **overrides)
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
    else:
        env["DATABASE_URL"] = (f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD'] or ''}@"
                               f"{settings_dict['HOST'] or '127.0.0.1'}:{settings_dict['PORT'] or 5432}/"
                               f"{settings_dict['NAME']}")
    return env


class WorkerProcess:
    """A real `celery worker` in its own process group, started and stopped by tests."""

    def __init__(self, env, concurrency=2, name="test"):
        self.env, self.concurrency = env, concurrency
        self.hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        self.log = TEST_LOGS / f"{self.hostname}.log"
        self.process = None

    def start(self, timeout=60):
        from explorer.models import WorkerHeartbeat

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers", "worker", "--loglevel", "INFO",
                 "--concurrency", str(self.concurrency), "--pool", "prefork", "--hostname", self.hostname,
                 "-Q", self.env["TASK_QUEUE"], "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not WorkerHeartbeat.objects.filter(hostname=self.hostname).exists():
            assert self.process.poll() is None, f"worker exited at start; see {self.log}"
            assert time.monotonic() < deadline, f"worker did not start; see {self.log}"
            time.sleep(0.2)
        return self

    def pool_pids(self):
        """Process ids of the pool children doing the work."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker):
    """One worker process for the whole session, on the real Redis."""
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).ping()  # fail loudly if Redis is not there
    with django_db_blocker.unblock():
        process = WorkerProcess(worker_env()).start()
    yield process
    process.stop()


def make_user(name, role):
    """A user with a role (explorer/access.py), as `manage.py adduser` makes one."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from explorer.access import EDITOR, EDITORS_GROUP

    user, _ = get_user_model().objects.get_or_create(username=name)
    # Only when missing: add() writes (INSERT OR IGNORE) even then, and a write inside a
    # test's transaction holds SQLite's write lock that server and worker processes wait on.
    if role == EDITOR and not user.groups.filter(name=EDITORS_GROUP).exists():
        user.groups.add(Group.objects.get_or_create(name=EDITORS_GROUP)[0])
    return user


def token_client(name, role):
    """Django's test client, signed in with the user's API token: no session is written, so
    a test in a transaction (pytest-django's `django_db`) holds no write lock on the test
    database that a server or worker process would then wait on."""
    from django.test import Client
    from rest_framework.authtoken.models import Token

    key = Token.objects.get_or_create(user=make_user(name, role))[0].key
    return Client(headers={"Authorization": f"Token {key}"})


@pytest.fixture(scope="session")
def known_users(django_db_setup, django_db_blocker):
    """The test users and their tokens, committed once: the tests in a transaction (which
    pytest-django runs first) then only read them. Tests that flush the database after
    themselves make them again as they run."""
    with django_db_blocker.unblock():
        for name, role in (("test-editor", "editor"), ("test-viewer", "viewer")):
            token_client(name, role)


@pytest.fixture
def client(known_users):
    """The test client signed in as an editor: tests of features act as the people who use
    them; tests of the access rules themselves use `anonymous_client` and `viewer_client`."""
    return token_client("test-editor", "editor")


@pytest.fixture
def anonymous_client():
    from django.test import Client

    return Client()


@pytest.fixture
def viewer_client(known_users):
    return token_client("test-viewer", "viewer")


@pytest.fixture(scope="module")
def api_auth_headers(django_db_setup, django_db_blocker):
    """Headers of an editor's API token, for clients that are not Django's test client
    (a server process sees it: it is committed, outside any test's transaction)."""
    from rest_framework.authtoken.models import Token

    with django_db_blocker.unblock():
        key = Token.objects.get_or_create(user=make_user("api-editor", "editor"))[0].key
    return {"Authorization": f"Token {key}"}


def wait_for_job(job, timeout=120):
    """Poll the durable Job row until it finishes, as the CLI and UI do."""
    deadline = time.monotonic() + timeout
    while True:
        job.refresh_from_db()
        if job.finished:
            return job
        assert time.monotonic() < deadline, f"job {job.pk} still {job.status}/{job.stage}: {job.message}"
        time.sleep(0.2)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private, real redis-server that a test may stop and start again. Like
    the Redis on this machine, it keeps nothing on disk: a restart loses its queue."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        import redis

        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.1)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def spawn_worker(django_db_blocker):
    """Start extra workers with their own environment; all are stopped after the test."""
    started = []

    def spawn(concurrency=1, **env):
        process = WorkerProcess(worker_env(**env), concurrency=concurrency, name="extra").start()
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()


SCREENSHOTS = ROOT / "bench-out" / "screenshots" / "browser"


def skip_tour(driver):
    """Make the browser a returning user's: the map's first-visit tour (test_map_browser.py
    tests it) is over before any page's scripts run. Its CDP script's id is `driver.tour_seen`."""
    driver.tour_seen = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "try { localStorage.setItem('explorer.tour.done', '1'); } catch (e) {}"})["identifier"]


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Real headless Chromium (Debian's chromium and chromium-driver), driven by Selenium."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("browser tests need chromium and chromedriver: apt-get install chromium chromium-driver, "
                    "or leave them out with -m 'not browser' (README, Tests and benchmarks)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--window-size=1400,900", "--autoplay-policy=no-user-gesture-required",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    skip_tour(driver)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@contextlib.contextmanager
def running_web_server(log_name="web-server.log", **env):
    """The real web process (`manage.py runserver`, static files included) on the test
    database, with `env` added to the test run's environment; yields its base URL."""
    import urllib.request

    port = free_port()
    log = TEST_LOGS / log_name
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
            cwd=ROOT, env=worker_env(**env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/collections/", timeout=2)
                break
            except urllib.error.HTTPError:  # it answers (a login may be asked for): it is up
                break
            except OSError:
                assert process.poll() is None, f"web server exited; see {log}"
                assert time.monotonic() < deadline, f"web server did not start; see {log}"
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def web_server(django_db_setup, django_db_blocker):
    """The real web process on the test database, as a browser would reach it. Unlike
    pytest-django's live_server, it does not make a test transactional, so data made by a
    module's fixture stays."""
    with django_db_blocker.unblock(), running_web_server() as url:
        yield url



@pytest.fixture(scope="module")
def map_collection(worker, media_root, django_db_blocker):
    """A collection ingested and mapped by the real worker (random Xception weights): a
    video of three scenes, a re-encoded copy of it, and a video of two other scenes. The
    collection and its three sources by file name; one per test module, deleted after it."""
    from explorer.jobs import start_ingest
    from explorer.models import Collection, Job
    from explorer.sampling_settings import sampling_params
    from tests.media import make_scenes, reencode

    folder = media_root / "map"
    original = make_scenes(folder / "original.mp4", ["mandelbrot", "sierpinski", "gradients"])
    reencode(original, folder / "copy.mp4")
    make_scenes(folder / "other.mp4", ["life=seed=3", "testsrc2"])
    with django_db_blocker.unblock():
        collection = Collection.objects.create(name="map", sampling=sampling_params(every=10).as_dict())
        job = wait_for_job(start_ingest(collection, [folder]), timeout=300)
        assert job.status == Job.Status.SUCCEEDED, (job.error, job.skipped)
        collection.refresh_from_db()
        sources = {source.path.rsplit("/", 1)[1]: source for source in collection.sources.all()}
    yield collection, sources
    with django_db_blocker.unblock():
        collection.delete()
