"""The JSON envelope of API.md: success bodies, ApiError, and request bodies read within limits.

Errors are raised, never returned: ApiError (or any bottle.HTTPError) is rendered in one place,
app.render_error, as JSON under /api/ and as an HTML page elsewhere.
"""
import datetime
import json
from typing import Any

from bottle import HTTPError, request, response

SUCCESS = 100


class ApiError(HTTPError):
    """An error answer: `status` is both the HTTP status and the envelope's code."""

    def __init__(self, status: int, msg: str, **payload: Any):
        super().__init__(status, msg)
        self.payload = payload


def ok(msg: str = 'ok', status: int = 200, **payload: Any) -> dict:
    """A success envelope; status 201 for a creation, 202 for work accepted into the queue."""
    response.status = status
    return {'code': SUCCESS, 'msg': msg, **payload}


def to_json(value: Any) -> str:
    return json.dumps(value, default=encode_extra, ensure_ascii=False)


def encode_extra(value: Any) -> str:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def json_body(limit: int) -> dict:
    """The request body as a JSON object, read up to `limit` bytes.

    :raise ApiError 400: not JSON, malformed, or not an object.
    :raise ApiError 413: larger than `limit` (also when sent chunked, without a length).
    """
    if request.content_type.split(';')[0].strip().lower() != 'application/json':
        raise ApiError(400, 'expected a JSON body (Content-Type: application/json)')
    raw = request.body.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, f'request body too large (limit {limit // 1024} KB)')
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f'malformed JSON: {exc}') from None
    if not isinstance(data, dict):
        raise ApiError(400, 'the JSON body must be an object')
    return data
