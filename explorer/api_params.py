"""What an API request may say, checked before a view acts on it: JSON bodies whose fields
take exactly the type their schema states, query parameters each given at most once, and
the pagination of every list. Kept apart from the views: DRF imports the pagination class
named in the settings while it loads its views."""
import math

from rest_framework import exceptions, serializers
from rest_framework.pagination import LimitOffsetPagination

INT64_MAX = 2**63 - 1  # ids and frame numbers: what the database and numpy hold


# --- Request bodies are JSON objects of exactly the fields their schema states, each of
# --- the type it states (not a string of it).

class ExactFields:
    # A body serializer that refuses fields it does not take (a misspelt `colums` is an
    # error, not silently the default); the schema says so with additionalProperties: false.
    # (A comment: a docstring here would describe every serializer that mixes this in.)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({name: ["not a field of this request"] for name in unknown})
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, float) and data.is_integer():
            data = int(data)  # JSON Schema's integer: 3.0 is 3
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise serializers.ValidationError("must be a finite number")
        return value


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- Query parameters are strings on the wire; each may be given once.

class QueryBooleanField(serializers.BooleanField):
    """true or false, as the schema says (DRF's own also takes yes, on, 1...)."""

    TRUE_VALUES, FALSE_VALUES, NULL_VALUES = {"true"}, {"false"}, set()
    default_empty_html = serializers.empty  # absent is absent, not an unticked checkbox


class QuerySerializer(serializers.Serializer):
    """Query parameters. A repeated one is refused rather than one of its values read."""

    def to_internal_value(self, data):
        refused = {}
        for name in self.fields:
            values = data.getlist(name) if hasattr(data, "getlist") else [data[name]] if name in data else []
            if len(values) > 1:
                refused[name] = ["given more than once"]
            elif values == [""]:  # DRF would read an empty value as an absent one
                refused[name] = ["empty: give a value, or leave the parameter out"]
        if refused:
            raise serializers.ValidationError(refused)
        return super().to_internal_value(data)


def validated_query(request, query_class):
    """The request's query parameters read by `query_class`, or 400 with every reason."""
    query = query_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class NumberedPageQuery(QuerySerializer):
    """A page of a list a view builds itself (a cluster's members, groups of copies)."""
    page = serializers.IntegerField(required=False, min_value=1, max_value=10**9, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=60)


def numbered_page(count, query, what):
    """(start, stop, pages) of `query`'s page of `count` items, or 404 past the last page."""
    size = query["page_size"]
    pages = max(1, -(-count // size))
    if query["page"] > pages:
        raise exceptions.NotFound(f"{what} has {pages} page(s) of {size}")
    return (query["page"] - 1) * size, query["page"] * size, pages


class PageQuery(QuerySerializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000,
                                     help_text="How many to return (default 100).")
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**9,
                                      help_text="How many to skip.")


class CollectionFilter(QuerySerializer):
    collection = serializers.IntegerField(required=False, min_value=1, max_value=INT64_MAX,
                                          help_text="Only those of this collection.")


class SourceFilter(CollectionFilter):
    search = serializers.CharField(required=False, max_length=200, help_text=(
        "Only those whose path (folder or file name) holds this text, ignoring case: the map's search box."))


class JobFilter(CollectionFilter):
    active = QueryBooleanField(required=False, help_text="true: only the jobs still queued or running.")


class Pagination(LimitOffsetPagination):
    """Every list: `limit` (1 to 1000, default 100) and `offset`, checked like any parameter."""

    default_limit = 100
    max_limit = 1000

    def paginate_queryset(self, queryset, request, view=None):
        self.query = validated_query(request, PageQuery)
        return super().paginate_queryset(queryset, request, view)

    def get_limit(self, request):
        return self.query.get("limit", self.default_limit)

    def get_offset(self, request):
        return self.query.get("offset", 0)

    def get_schema_operation_parameters(self, view):
        fields = PageQuery().fields
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            field = fields[parameter["name"]]
            parameter["schema"].update(minimum=field.min_value, maximum=field.max_value)
        return parameters
