"""The JSON envelope of API.md: success bodies, ApiError, cached answers with ETags, and request
bodies read within limits.

Errors are raised, never returned: ApiError (or any bottle.HTTPError) is rendered in one place,
app.render_error, as JSON under /api/ and as an HTML page elsewhere. A leaf: every layer may
raise ApiError.
"""
import datetime
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bottle import HTTPError, request, response

if TYPE_CHECKING:
    from sprig.cache.aside import Entry

SUCCESS, REFUSED = 100, 101


class ApiError(HTTPError):
    """An error answer: `status` is both the HTTP status and the envelope's code."""

    def __init__(self, status: int, msg: str, headers: dict | None = None, **payload: Any):
        super().__init__(status, msg, **(headers or {}))
        self.payload = payload


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


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag; weak comparison, as RFC 9110 asks for GET."""
    tags = [tag.strip().removeprefix('W/') for tag in header.split(',')]
    return '*' in tags or etag in tags


# A cached value's answer as JSON, by its ETag (a digest of the value): encoded once, not per read.
ENCODED: dict[str, str] = {}


def cached_ok(entry: 'Entry') -> str:
    """A cached read's answer: X-Cache, ETag, and 304 when the client has this version."""
    etag = f'"{entry.etag}"'
    # Our own values (a status word, a hex digest): into Bottle's header table without its checks.
    response._headers.update({'X-Cache': [entry.status], 'Etag': [etag],
                              'Cache-Control': ['no-cache']})  # revalidate every time: a 304 is cheap
    if etag_matches(request.get_header('If-None-Match', ''), etag):
        response.status = 304
        return ''
    body = ENCODED.get(entry.etag)
    if body is None:
        if len(ENCODED) >= 1000:  # made-up pages cannot fill the memory
            ENCODED.clear()
        body = ENCODED[entry.etag] = to_json(ok(result=entry.value))
    response.content_type = 'application/json'
    return body


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
        data = json.loads(raw, object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f'malformed JSON: {exc}') from None
    except RecursionError:
        raise ApiError(400, 'malformed JSON: nested too deeply') from None
    except ValueError as exc:  # a number of more digits than Python converts (4,300), a repeated key
        raise ApiError(400, f'malformed JSON: {exc}') from None
    if not isinstance(data, dict):
        raise ApiError(400, 'the JSON body must be an object')
    return data


def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose keys are all different: a repeated key would silently take the last."""
    found = dict(pairs)
    if len(found) != len(pairs):
        repeated = next(key for index, (key, _) in enumerate(pairs) if key in dict(pairs[:index]))
        raise ValueError(f'the key {json.dumps(repeated)} is given twice')
    return found
