"""Request inputs: the base of every body and query model, validation that names every bad field,
and the field types people fill in (lines, images, links, orders). A leaf, like the envelope."""
import json
import re
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from bottle import request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from sprig.web.envelope import ApiError, json_body

M = TypeVar('M', bound=BaseModel)


class Input(BaseModel):
    """Base of every request body and query model: unknown fields are errors, not ignored."""

    model_config = ConfigDict(extra='forbid')


def no_nulls(schema: dict) -> None:
    """A PATCH body's JSON Schema: a field given must hold a value (null is refused), and an
    omitted one has no default (it stays as it is)."""
    for field in schema.get('properties', {}).values():
        options = [option for option in field.pop('anyOf', []) if option.get('type') != 'null']
        field.update(options[0] if len(options) == 1 else {'anyOf': options} if options else {})
        if 'default' in field and field['default'] is None:
            del field['default']


class Change(Input):
    """Base of a PATCH body: only the fields given change, and at least one must be given."""

    model_config = ConfigDict(json_schema_extra=no_nulls)

    @model_validator(mode='after')
    def not_empty(self) -> 'Change':
        if not self.model_fields_set:
            raise ValueError('give at least one field to change')
        return self


# Each rule's message in the words a form shows beside its field (pydantic's own say
# "String should have at least 1 character"); {ctx keys} come from the error.
PLAIN = {
    'missing': 'required',
    'extra_forbidden': 'unknown field',
    'string_too_short': 'must be at least {min_length} characters',
    'string_too_long': 'must be at most {max_length} characters',
    'string_type': 'must be text',
    'string_pattern_mismatch': 'is not in the expected form',
    'int_type': 'must be a whole number',
    'int_parsing': 'must be a whole number',
    'int_from_float': 'must be a whole number',
    'bool_type': 'must be true or false',
    'bool_parsing': 'must be true or false',
    'greater_than_equal': 'must be at least {ge}',
    'less_than_equal': 'must be at most {le}',
    'literal_error': 'must be one of: {expected}',
    'date_type': 'must be a date, like 2026-12-31',
    'date_parsing': 'must be a date, like 2026-12-31',
    'date_from_datetime_parsing': 'must be a date, like 2026-12-31',
    'datetime_type': 'must be a date and time, like 2026-12-01T10:00:00+08:00',
    'datetime_parsing': 'must be a date and time, like 2026-12-01T10:00:00+08:00',
    'datetime_from_date_parsing': 'must be a date and time, like 2026-12-01T10:00:00+08:00',
    'timezone_aware': 'must say its time zone, like 2026-12-01T10:00:00+08:00',
    'decimal_type': 'must be a number, like 9.90',
    'decimal_parsing': 'must be a number, like 9.90',
    'decimal_max_places': 'must have at most {decimal_places} decimals',
    'decimal_max_digits': 'must have at most {max_digits} digits',
    'model_type': 'must be an object',
    'dict_type': 'must be an object',
}


def plain(error: dict) -> str:
    """An error's message for people; a rule of our own says its own (ValueError's text)."""
    if error['type'] == 'string_too_short' and error.get('ctx', {}).get('min_length') == 1:
        return 'required'
    template = PLAIN.get(error['type'])
    if template is None:
        return error['msg'].removeprefix('Value error, ')
    return template.format(**{key: str(value) for key, value in error.get('ctx', {}).items()})


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One message per bad field, in the words a form would show next to the field."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        name = '.'.join(str(part) for part in error['loc']) or 'body'
        errors.setdefault(name, plain(error))
    return errors


def unstorable(value: Any) -> bool:
    """Text no database column takes: NUL characters (PostgreSQL) or lone surrogates (no UTF-8)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        return True
    return '\x00' in value


def validated(model: type[M], data: dict, strict_json: bool = False) -> M:
    """data as the model; with strict_json, data came from a JSON body and each value must have
    its field's JSON type (no "1" or 1.0 for 1, no 0 for false).

    :raise ApiError 400: naming every bad field of data at once.
    """
    errors = {name: 'contains characters that are not allowed' for name, value in data.items()
              if unstorable(value)}
    try:
        result = (model.model_validate_json(json.dumps(data), strict=True) if strict_json
                  else model.model_validate(data))
    except ValidationError as exc:
        errors = field_errors(exc) | errors
    if errors:
        raise ApiError(400, f'invalid input: {", ".join(errors)}', errors=errors)
    return result


def parse_body(model: type[M], limit: int) -> M:
    """The JSON body as a validated model, strictly typed (see json_body and validated)."""
    return validated(model, json_body(limit), strict_json=True)


def parse_query(model: type[M]) -> M:
    """The query string as a validated model; unknown parameters are errors too."""
    return validated(model, {key: request.query.getunicode(key) for key in request.query})


# Addresses people enter (banner and course images, links) ----------------------------------------

SITE_PATH = re.compile(r'/?(?!/)[A-Za-z0-9_\-./~%]+')  # static/banners/a.svg or /courses/free


def web_address(value: str) -> bool:
    """An absolute http(s) URL with a host, and nothing a browser would read differently."""
    if any(char <= ' ' or char in '"\'<>\\`' for char in value):
        return False
    parts = urlsplit(value)
    return parts.scheme in ('http', 'https') and bool(parts.netloc)


def site_path(value: str) -> bool:
    return bool(SITE_PATH.fullmatch(value)) and '..' not in value.split('/')


def image_address(value: str) -> str:
    if web_address(value) or site_path(value):
        return value
    raise ValueError('must be an http(s) URL or a path on this site, like static/banners/a.svg')


def link_address(value: str) -> str:
    if value == '' or web_address(value) or (value.startswith('/') and site_path(value)):
        return value
    raise ValueError('must be empty, an http(s) URL, or a path on this site starting with /')


def optional_image(value: str) -> str:
    return value if value == '' else image_address(value)


# The addresses' rules, for the OpenAPI document (JSON Schema's ECMA-262 regular expressions).
WEB = 'https?://[^\\s"\'<>\\\\`]+'
PATH = r'(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_\-./~%]+'
IMAGE_RULE = {'pattern': f'^({WEB}|/?(?!/){PATH})$', 'description': 'an http(s) URL, or a path on this site '
              'like static/banners/a.svg'}
LINK_RULE = {'pattern': f'^({WEB}|/(?!/){PATH})?$', 'description': 'empty, an http(s) URL, or a path on this '
             'site starting with /'}
Line = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]
Image = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(image_address),
                  Field(json_schema_extra=IMAGE_RULE)]
OptionalImage = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255),
                          AfterValidator(optional_image),
                          Field(json_schema_extra={**IMAGE_RULE, 'pattern': f'^({WEB}|/?(?!/){PATH})?$'})]
Link = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(link_address),
                 Field(json_schema_extra=LINK_RULE)]
Orders = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
