"""One error shape for the whole API, and the schema that documents it.

Every error under /api/ answers `{"detail": "...", "errors": {field: [messages]}}`:
`detail` always says what went wrong in a sentence; `errors` is there when particular
fields or parameters were refused (a validation error), keyed by their names (a list's
items as `paths.0`, messages about no one field under `non_field_errors`). DRF's
exceptions reach it through `exception_handler` (settings.REST_FRAMEWORK), Django's own
404 and 500 for URLs no view answers through `json_error` (explorer/urls.py), and
`ErrorDocumentingSchema` adds the shape to every operation's error responses."""
from django.http import JsonResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in a sentence.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="The refused fields or parameters, each with its reasons.")


class Conflict(exceptions.APIException):
    """The request is sound, but the resource is not in a state to do it (no map yet...)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "not possible in the resource's current state"
    default_code = "conflict"


def not_made_yet(collection, missing):
    """409 saying the collection `missing` (e.g. "has no clusters") yet, and what is running
    that may make it."""
    running = collection.jobs.filter(status__in=("queued", "running")).first()
    doing = f": job {running.pk} is at stage {running.stage}" if running else ""
    return Conflict(f"collection {collection.pk} {missing} yet{doing}")


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is not None:
        response.data = error_body(response.data)
    return response


def error_body(data):
    """DRF's error data ({"detail": ...}, or the fields' messages) in the one shape."""
    if isinstance(data, dict) and list(data) == ["detail"] and not isinstance(data["detail"], (list, dict)):
        return {"detail": str(data["detail"])}
    errors = {}
    _flatten(data if isinstance(data, dict) else {api_settings.NON_FIELD_ERRORS_KEY: data}, "", errors)
    detail = "; ".join(f"{name}: {'; '.join(messages)}" if name != api_settings.NON_FIELD_ERRORS_KEY
                       else "; ".join(messages) for name, messages in errors.items())
    return {"detail": detail or "invalid request", "errors": errors}


def _flatten(data, prefix, errors):
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), errors)
    elif isinstance(data, list) and any(isinstance(item, (list, dict)) for item in data):
        for index, item in enumerate(data):
            if item:  # a list field's valid items have empty entries
                _flatten(item, f"{prefix}.{index}", errors)
    else:
        errors.setdefault(prefix, []).extend(str(message) for message in (data if isinstance(data, list) else [data]))


def json_error(status_code, detail):
    """The error shape for the answers Django gives itself (no view matched, a crash)."""
    return JsonResponse({"detail": detail}, status=status_code)


# What each status means for any operation; an operation may say more in its own words.
ERROR_STATUSES = {
    "400": "Parameters or body refused: `errors` names each and says why.",
    "404": "No such resource.",
    "405": "Method not allowed here; `Allow` lists those that are.",
    "409": "Not possible in the resource's current state; `detail` says why.",
    "415": "The body must be JSON (Content-Type: application/json).",
}


def error_response(description):
    """An error response for @extend_schema (a 409, say), in the one shape, described in
    the operation's own words."""
    return OpenApiResponse(ErrorSerializer, description=description)


class ErrorDocumentingSchema(AutoSchema):
    """drf-spectacular's schema, where every operation documents the one error shape for
    the statuses it can answer with, every POST requires its JSON body, and every object
    has exactly the fields it lists."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = {"400", "404", "405"} | ({"415"} if self.method == "POST" else set())
        codes |= {code for code in responses if code >= "400"}  # those an operation declares itself
        for code in sorted(codes):
            description = responses.get(code, {}).get("description") or ERROR_STATUSES[code]
            responses[code] = {**self._get_response_for_code(ErrorSerializer, code, direction=direction),
                               "description": description}
        return responses

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        schema["additionalProperties"] = False  # bodies have exactly their fields (api_params.ExactFields)
        return schema

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None and self.method == "POST":
            body["required"] = True  # a POST without its JSON body is refused (415)
        return body
