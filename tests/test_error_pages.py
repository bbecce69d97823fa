"""The product's own 404 and 500 pages for the site, JSON for /api/. A URLconf of its own
adds a view that fails, so a real 500 goes through the real handlers."""
import pytest
from django.urls import include, path

from explorer import urls as product_urls


def fails(request):
    raise RuntimeError("secret detail of a failure")


urlpatterns = [path("failing/", fails), path("api/failing/", fails), path("", include(product_urls))]
handler404, handler500 = product_urls.handler404, product_urls.handler500

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def test_pages_not_found_are_the_products_own(client):
    page = client.get("/no/such/page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert "<h1>Not found</h1>" in html and "/no/such/page/" in html and "Embedding explorer" in html
    escaped = client.get("/<script>alert(1)</script>/").content.decode()
    assert "<script>alert(1)" not in escaped
    api = client.get("/api/no/such/endpoint/")
    assert api.status_code == 404 and api.json() == {"detail": "no API endpoint at /api/no/such/endpoint/"}


def test_a_failure_shows_a_plain_page_without_the_database(client, rf, django_assert_num_queries):
    with django_assert_num_queries(0):  # rendered without the request: no context processor runs
        assert b"Something went wrong" in handler500(rf.get("/failing/")).content
    client.raise_request_exception = False
    page = client.get("/failing/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert "Something went wrong" in html and "Embedding explorer" in html
    assert "secret detail" not in html and "Traceback" not in html and "RuntimeError" not in html
    api = client.get("/api/failing/")
    assert api.status_code == 500 and "secret detail" not in api.content.decode()
    assert set(api.json()) == {"detail"}
