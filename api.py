"""The JSON envelope of API.md: success bodies, ApiError, and request bodies read within limits.

Errors are raised, never returned: ApiError (or any bottle.HTTPError) is rendered in one place,
app.render_error, as JSON under /api/ and as an HTML page elsewhere.
"""
import datetime
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from bottle import HTTPError, request, response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from cached import Entry

SUCCESS, REFUSED = 100, 101
M = TypeVar('M', bound=BaseModel)


@dataclass(frozen=True)
class Doc:
    """What an /api/ route is, for the OpenAPI document (openapi.py); given as route config:
    `app.get(path, doc=Doc(...))`. `statuses`: what it may answer besides 200, 400 (when it reads
    input), 401/403 (from `auth`) and 503."""

    summary: str
    auth: str = 'public'  # public, user or admin
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    statuses: tuple[int, ...] = ()


class ApiError(HTTPError):
    """An error answer: `status` is both the HTTP status and the envelope's code."""

    def __init__(self, status: int, msg: str, headers: dict | None = None, **payload: Any):
        super().__init__(status, msg, **(headers or {}))
        self.payload = payload


class Input(BaseModel):
    """Base of every request body and query model: unknown fields are errors, not ignored."""

    model_config = ConfigDict(extra='forbid')


class Change(Input):
    """Base of a PATCH body: only the fields given change, and at least one must be given."""

    @model_validator(mode='after')
    def not_empty(self) -> 'Change':
        if not self.model_fields_set:
            raise ValueError('give at least one field to change')
        return self


def field_errors(exc: ValidationError) -> dict[str, str]:
    """One message per bad field, in the words a form would show next to the field."""
    errors: dict[str, str] = {}
    for error in exc.errors():
        name = '.'.join(str(part) for part in error['loc']) or 'body'
        message = error['msg'].removeprefix('Value error, ')
        if error['type'] == 'missing':
            message = 'required'
        elif error['type'] == 'extra_forbidden':
            message = 'unknown field'
        errors.setdefault(name, message)
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


def validated(model: type[M], data: dict) -> M:
    """:raise ApiError 400: naming every bad field of data at once."""
    errors = {name: 'contains characters that are not allowed' for name, value in data.items()
              if unstorable(value)}
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc) | errors
    if errors:
        raise ApiError(400, f'invalid input: {", ".join(errors)}', errors=errors)
    return result


def parse_body(model: type[M], limit: int) -> M:
    """The JSON body as a validated model (see json_body and validated)."""
    return validated(model, json_body(limit))


def parse_query(model: type[M]) -> M:
    """The query string as a validated model; unknown parameters are errors too."""
    return validated(model, {key: request.query.getunicode(key) for key in request.query})


def ok(msg: str = 'ok', status: int = 200, **payload: Any) -> dict:
    """A success envelope; status 201 for a creation, 202 for work accepted into the queue."""
    response.status = status
    return {'code': SUCCESS, 'msg': msg, **payload}


def refuse(msg: str, code: int = REFUSED, **payload: Any) -> dict:
    """A business "no" (101: not registered, sold out...): a normal 200 answer, not an error."""
    return {'code': code, 'msg': msg, **payload}


def client_address() -> str:
    """The peer's address as the WSGI server saw it (behind a proxy, configure Waitress's
    trusted_proxy so this is the client's, not the proxy's); never a spoofable header."""
    return request.environ.get('REMOTE_ADDR') or '-'


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


Line = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]
Image = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(image_address)]
OptionalImage = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255),
                          AfterValidator(optional_image)]
Link = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255), AfterValidator(link_address)]
Orders = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag; weak comparison, as RFC 9110 asks for GET."""
    tags = [tag.strip().removeprefix('W/') for tag in header.split(',')]
    return '*' in tags or etag in tags


def cached_ok(entry: Entry) -> dict | str:
    """A cached read's answer: X-Cache, ETag, and 304 when the client has this version."""
    etag = f'"{entry.etag}"'
    response.set_header('X-Cache', entry.status)
    response.set_header('ETag', etag)
    response.set_header('Cache-Control', 'no-cache')  # revalidate every time: a 304 is cheap
    if etag_matches(request.get_header('If-None-Match', ''), etag):
        response.status = 304
        return ''
    return ok(result=entry.value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=encode_extra, ensure_ascii=False)


def encode_extra(value: Any) -> str:
    if isinstance(value, datetime.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC).isoformat()  # stored times are UTC
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def json_body(limit: int) -> dict:
    """The request body as a JSON object, read up to `limit` bytes.

    :raise ApiError 400: not JSON, malformed, or not an object.
    :raise ApiError 413: larger than `limit` (also when sent chunked, without a length).
    """
    if request.content_type.split(';')[0].strip().lower() != 'application/json':
        raise ApiError(400, 'expected a JSON body (Content-Type: application/json)')
    # Straight from the server's stream: Bottle's request.body would read it all first.
    raw = request.environ['wsgi.input'].read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, f'request body too large (limit {limit // 1024} KB)')
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f'malformed JSON: {exc}') from None
    except RecursionError:
        raise ApiError(400, 'malformed JSON: nested too deeply') from None
    if not isinstance(data, dict):
        raise ApiError(400, 'the JSON body must be an object')
    return data
