"""Who may do what: the one home of the product's access control.

Two roles. A *viewer* (any active user) browses, searches, plays and downloads: every
GET, and the POSTs that only read what they are sent (VIEWER_POSTS: a prediction). An
*editor* (a superuser, or a member of the "editors" group) also ingests, trains, labels,
renders posters and deletes: every other method. People sign in on the login
page (a session; CSRF applies to every unsafe request it makes); programs send
`Authorization: Token KEY` (DRF's tokens: `manage.py drf_create_token USER`).

The one exception is the single local user of a development server that the product
itself starts bound to a loopback address (`explore`, `runserver 127.0.0.1:PORT`): it is
login-free and acts as an editor, unless REQUIRE_LOGIN is set. Every other way of
serving the app (gunicorn, docker, runserver on another address) requires login,
whatever the client's address (behind nginx every request comes from loopback), and
refuses to start with the development SECRET_KEY.

`AccessControlMiddleware` applies this to every URL, pages, files and API alike, so a new
page or endpoint is behind it without doing anything.
"""
import ipaddress
import sys
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse
from django.shortcuts import redirect, render

EDITOR, VIEWER = "editor", "viewer"
# POSTs that change nothing (they send a file to be read, not a change): viewers may send them.
VIEWER_POSTS = ("api-predict",)
EDITORS_GROUP = "editors"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# Set by `runserver` (explorer/management/commands/runserver.py) in the process that
# serves, when it is bound to a loopback address. Nothing else sets it.
_local_server = {"address": None}


def is_loopback(host):
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_login_free(address):
    """Called by the development server bound to `address`, before it serves: login-free
    for its one local user when the address is loopback (and REQUIRE_LOGIN is off)."""
    if is_loopback(address) and not settings.REQUIRE_LOGIN:
        _local_server["address"] = address
    return login_free()


def login_free():
    return _local_server["address"] is not None


def refuse_unsafe_start():
    """A server that requires login must not sign sessions with the development key."""
    if not login_free() and settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: this server requires login, and sessions signed with the "
            "development key could be forged. Set DJANGO_SECRET_KEY to a long random string, e.g. "
            "python -c \"import secrets; print(secrets.token_urlsafe(50))\"")


def role_of(user):
    """EDITOR, VIEWER, or None for an anonymous or inactive user."""
    if not (user and user.is_authenticated and user.is_active):
        return None
    if user.is_superuser or user.groups.filter(name=EDITORS_GROUP).exists():
        return EDITOR
    return VIEWER


def _is_open(path):
    """URLs anyone may reach: signing in, and the static files the login page needs."""
    return path.startswith(("/accounts/login/", "/accounts/logout/", "/" + settings.STATIC_URL.lstrip("/")))


def _refuse(request, status, detail):
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": detail}, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Token realm="api"'
        return response
    if status == 401:
        return redirect(f"{settings.LOGIN_URL}?next={quote(request.get_full_path())}")
    return render(request, "403.html", {"detail": detail}, status=status)


def _token_user(request):
    """(user, error) from an `Authorization: Token KEY` header; (None, None) without one."""
    from rest_framework.authentication import TokenAuthentication, get_authorization_header
    from rest_framework.exceptions import AuthenticationFailed

    if not get_authorization_header(request):
        return None, None
    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed as exc:
        return None, str(exc.detail)
    return (found[0] if found else None), None


def _csrf_refusal(request):
    """Django's own CSRF check, for every unsafe request that is not token-authenticated
    (session users and the local user alike; DRF's views are exempt from the middleware's)."""
    from django.middleware.csrf import CsrfViewMiddleware

    refused = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
    return refused is not None


def _changes_nothing(request):
    from django.urls import Resolver404, resolve

    try:
        return request.method == "POST" and resolve(request.path_info).url_name in VIEWER_POSTS
    except Resolver404:
        return False


class AccessControlMiddleware:
    """Sits after AuthenticationMiddleware: every request is signed in (session or token)
    or refused; unsafe methods need an editor and pass Django's CSRF check."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_open(request.path):
            return self.get_response(request)
        token_user, token_error = _token_user(request)
        if token_error:
            return _refuse(request, 401, token_error)
        if login_free():
            role = EDITOR
        else:
            role = role_of(token_user or request.user)
            if role is None:
                return _refuse(request, 401, "sign in, or send an API token (Authorization: Token KEY)")
        if request.method not in SAFE_METHODS:
            if token_user is None and _csrf_refusal(request):
                return _refuse(request, 403, "CSRF check failed: reload the page and try again")
            if role != EDITOR and not _changes_nothing(request):
                return _refuse(request, 403, "viewers may look but not change anything: this needs an editor")
        request.role = role
        return self.get_response(request)


def announce(stream=sys.stdout):
    if login_free():
        stream.write(f"Login-free: this server listens on {_local_server['address']} only, for its one local "
                     "user, who may do everything. Set REQUIRE_LOGIN=true to require login here too.\n")
    else:
        stream.write("Login required: sign in at /accounts/login/ (create users with `manage.py adduser`).\n")
