"""Checks of our own that schemathesis runs beside its built-in ones (tests/test_api_fuzz.py
loads this module as its hooks)."""
import schemathesis

POSTER_OPERATIONS = ("POST /api/posters/", "POST /api/posters/plan/")


@schemathesis.check
def poster_refusals_name_no_field(ctx, response, case):
    """A schema-valid poster may be refused (400) only for what its fields make together
    (pixels, cells, a window beside the map): its errors name no one field. A field named
    there would mean the schema and the server disagree about that field."""
    meta = case.meta
    if (case.operation.label not in POSTER_OPERATIONS or meta is None or not meta.generation.mode.is_positive
            or response.status_code != 400):
        return None
    fields = set(response.json().get("errors", {})) - {"non_field_errors"}
    if fields:
        raise AssertionError(f"a schema-valid poster had these fields refused: {', '.join(sorted(fields))}")
    return None
