"""Access control (explorer/access.py): who may see and change what, on every kind of server
the product runs as. Test clients for the rules; real runserver and gunicorn processes for
what a server does at start."""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from explorer.models import Collection
from tests.conftest import ROOT, free_port, make_user, worker_env
from tests.environment import TEST_DATA
from workers.pipeline.tiles import LAYOUT_REVISION

pytestmark = pytest.mark.django_db(transaction=True)

# One of each kind of URL: pages, files, the API and its schema.
SEEN_BY_VIEWERS = ["/", "/collections/{id}/", "/collections/{id}/map/", "/api/collections/", "/api/sources/",
                   "/api/jobs/", "/api/posters/", "/api/collections/{id}/map/", "/api/openapi.json"]
# Every change a viewer must not make: (path, JSON body).
EDITOR_ACTIONS = [("/api/collections/", {"name": "new"}),
                  ("/api/collections/{id}/ingest/", {"paths": [str(TEST_DATA / "media" / "nowhere")]}),
                  ("/api/collections/{id}/train/", {}),
                  ("/api/posters/", {"collection": "{id}"}),
                  ("/api/posters/plan/", {"collection": "{id}"})]


@pytest.fixture
def collection():
    return Collection.objects.create(name="access", sampling={})


def urls(templates, collection):
    return [template.format(id=collection.pk) for template in templates]


def test_anonymous_visitors_are_sent_to_sign_in_or_refused(anonymous_client, collection):
    for url in urls(SEEN_BY_VIEWERS, collection) + [f"/sources/1/file", "/frames/1/0.jpg", "/posters/1/file",
                                                     f"/collections/{collection.pk}/tiles/v/{LAYOUT_REVISION}/0/0/0.jpg"]:
        response = anonymous_client.get(url)
        if url.startswith("/api/"):
            assert response.status_code == 401, url
            assert response["WWW-Authenticate"].startswith("Token"), url
            assert "sign in" in response.json()["detail"]
        else:
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"/accounts/login/?next={url}"), url
    for path, body in EDITOR_ACTIONS:
        url = path.format(id=collection.pk)
        assert anonymous_client.post(url, body, content_type="application/json").status_code == 401, url
    assert anonymous_client.get("/accounts/login/").status_code == 200
    assert not Collection.objects.exclude(pk=collection.pk).exists()


def test_viewers_browse_but_every_change_needs_an_editor(viewer_client, client, collection):
    for url in urls(SEEN_BY_VIEWERS, collection):
        assert viewer_client.get(url).status_code == 200, url
    for path, body in EDITOR_ACTIONS:
        url = path.format(id=collection.pk)
        body = {key: (collection.pk if value == "{id}" else value) for key, value in body.items()}
        refused = viewer_client.post(url, body, content_type="application/json")
        assert refused.status_code == 403, url
        assert "needs an editor" in refused.json()["detail"]
        # The editor gets past the access control: whatever the view then says, it is not 401/403.
        assert client.post(url, body, content_type="application/json").status_code not in (401, 403), url
    assert Collection.objects.filter(name="new").count() == 1  # made by the editor only


def test_a_session_post_without_the_csrf_token_is_refused(collection):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("careful-editor", "editor"))
    refused = browser.post("/api/collections/", {"name": "forged"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.get("/")  # a page sets the CSRF cookie that its scripts send back
    token = browser.cookies["csrftoken"].value
    made = browser.post("/api/collections/", {"name": "real"}, content_type="application/json",
                        HTTP_X_CSRFTOKEN=token)
    assert made.status_code == 201, made.content
    assert list(Collection.objects.filter(name__in=["forged", "real"]).values_list("name", flat=True)) == ["real"]


def test_api_tokens_from_the_adduser_command(collection, anonymous_client):
    from django.core.management import call_command
    from io import StringIO

    out = StringIO()
    call_command("adduser", "robot", "--role", "editor", "--no-password", "--token", stdout=out)
    editor_key = re.search(r"API token: (\w+)", out.getvalue()).group(1)
    call_command("adduser", "reader", "--role", "viewer", "--no-password", "--token", stdout=out)
    viewer_key = re.findall(r"API token: (\w+)", out.getvalue())[-1]

    def post(key):
        return anonymous_client.post("/api/collections/", {"name": f"by-{key[:6]}"}, content_type="application/json",
                                     HTTP_AUTHORIZATION=f"Token {key}")

    assert post(editor_key).status_code == 201  # no session, no CSRF cookie: the token is enough
    assert post(viewer_key).status_code == 403
    assert anonymous_client.get("/api/collections/", HTTP_AUTHORIZATION=f"Token {viewer_key}").status_code == 200
    wrong = anonymous_client.get("/api/collections/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Invalid token."
    # The token also opens files and pages, for programs that download.
    assert anonymous_client.get("/", HTTP_AUTHORIZATION=f"Token {viewer_key}").status_code == 200


def test_signing_in_with_a_password_and_out(anonymous_client, collection):
    from django.contrib.auth import get_user_model

    user = make_user("pat", "viewer")
    user.set_password("a long and unusual passphrase")
    user.save()
    wrong = anonymous_client.post("/accounts/login/", {"username": "pat", "password": "guess"})
    assert wrong.status_code == 200 and b"do not match" in wrong.content
    signed_in = anonymous_client.post("/accounts/login/", {"username": "pat", "password": "a long and unusual passphrase",
                                                          "next": f"/collections/{collection.pk}/"})
    assert signed_in.status_code == 302 and signed_in["Location"] == f"/collections/{collection.pk}/"
    page = anonymous_client.get(f"/collections/{collection.pk}/")
    assert page.status_code == 200 and b"pat (viewer)" in page.content
    anonymous_client.post("/accounts/logout/")
    assert anonymous_client.get("/").status_code == 302
    get_user_model().objects.filter(username="pat").update(is_active=False)


# --- servers: which are login-free, which require login, which refuse to start ---------------

def get(url, **headers):
    """(status, body) of a GET that does not follow redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def serve(command, log, **env):
    """Start a server process; wait until it answers or exits. Returns (process, base URL)."""
    port = free_port()
    command = [part.replace("PORT", str(port)) for part in command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=worker_env(**env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            get(f"http://127.0.0.1:{port}/accounts/login/")
            break
        except OSError:
            time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}"


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


RUNSERVER = [sys.executable, "manage.py", "runserver", "--noreload"]
GUNICORN = [sys.executable, "-m", "gunicorn", "explorer.wsgi:application", "--bind", "127.0.0.1:PORT",
            "--workers", "1"]
SECRET = {"DJANGO_SECRET_KEY": "a-test-secret-key-that-is-long-and-random-enough-0123456789abcdef"}


def test_a_development_server_on_loopback_is_login_free_and_says_so(tmp_path, collection):
    process, url = serve(RUNSERVER + ["127.0.0.1:PORT"], tmp_path / "local.log")
    try:
        assert get(f"{url}/api/collections/")[0] == 200
        assert "local mode: no login" in get(f"{url}/")[1]
    finally:
        stop(process)
    assert "Login-free: this server listens on 127.0.0.1 only" in (tmp_path / "local.log").read_text()

    process, url = serve(RUNSERVER + ["127.0.0.1:PORT"], tmp_path / "required.log", REQUIRE_LOGIN="true", **SECRET)
    try:
        assert get(f"{url}/api/collections/")[0] == 401
    finally:
        stop(process)
    assert "Login required" in (tmp_path / "required.log").read_text()


@pytest.mark.parametrize("command", [RUNSERVER + ["0.0.0.0:PORT"], GUNICORN], ids=["runserver-all-interfaces", "gunicorn"])
def test_any_other_server_requires_login_and_a_real_secret_key(tmp_path, command, collection):
    refused, _ = serve(command, tmp_path / "refused.log", DJANGO_SECRET_KEY="")
    refused.wait(timeout=60)
    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in (tmp_path / "refused.log").read_text()

    process, url = serve(command, tmp_path / "serving.log", **SECRET)
    try:
        # Every request comes from 127.0.0.1 here, as behind nginx: the address grants nothing.
        status, _ = get(f"{url}/api/collections/")
        assert status == 401
        assert get(f"{url}/collections/{collection.pk}/map/")[0] == 302
        token = {"Authorization": "Token " + __import__("rest_framework.authtoken.models", fromlist=["Token"])
                 .Token.objects.get_or_create(user=make_user("gunicorn-viewer", "viewer"))[0].key}
        assert get(f"{url}/api/collections/", **token)[0] == 200
    finally:
        stop(process)



STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}


def test_gunicorn_alone_serves_the_pages_static_files(tmp_path, client, anonymous_client, collection):
    """No nginx in front and no `collectstatic` (an empty STATIC_ROOT): the app's own process
    (WhiteNoise) serves every script and style sheet the pages name, Leaflet included, to
    anyone, so the login page has its CSS before anyone signs in."""
    from django.contrib.staticfiles import finders

    pages = [anonymous_client.get("/accounts/login/")] + [
        client.get(path) for path in ("/", f"/collections/{collection.pk}/", f"/collections/{collection.pk}/map/")]
    named = set()
    for page in pages:
        assert page.status_code == 200, page
        named |= set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.content.decode()))
    assert {"/static/vendor/leaflet/leaflet.js", "/static/vendor/leaflet/leaflet.css",
            "/static/explorer/explorer.css"} <= named

    process, url = serve(GUNICORN, tmp_path / "static.log", STATIC_ROOT=str(tmp_path / "static-root"), **SECRET)
    try:
        for path in sorted(named):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                assert response.status == 200, path
                assert response.headers["Content-Type"].startswith(STATIC_TYPES[Path(path).suffix]), path
                assert response.read() == Path(finders.find(path.removeprefix("/static/"))).read_bytes(), path
    finally:
        stop(process)
    assert not any((tmp_path / "static-root").iterdir())  # served from where the files are, not a copy

def test_the_compose_settings_pass_djangos_deployment_checks():
    """`manage.py check --deploy` with the environment docker/compose.yaml gives web and workers."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    environment = {}
    for name, value in compose["x-app"]["environment"].items():
        # ${NAME:-default} and ${NAME:?message}: the default, or what docker/.env must set.
        value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), str(value))
        environment[name] = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: SECRET.get(m.group(1), "x"), value)
    for local_only in ("DATABASE_URL", "REDIS_URL", "DATA_DIR", "MEDIA_ROOTS", "KERAS_HOME"):
        environment.pop(local_only)  # container paths and hosts: not what the check is about
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=dict(os.environ, **environment), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
