"""The OpenAPI 3 document of every /api/v1/ route, built from the routes' own declarations, and its page.

Each route is declared once (routing.Route): what it does, who may call it, its body and query
models (pydantic, which give the JSON Schemas) and the statuses it answers besides 200. The
plugin that enforces the declaration and this document read the same object. A route without a
declaration is an error here, so nothing goes undocumented.
"""
import re
from collections.abc import Callable
from typing import Any

from bottle import Bottle, request
from pydantic import BaseModel

from sprig.settings import Settings
from sprig.web.auth import ROLES_OF, SAFE_METHODS
from sprig.web.routing import Route, Routes

ROUTES = Routes()

PARAMETER = re.compile(r'<(\w+)(?::(\w+)(?::([^>]*))?)?>')
REASONS = {200: 'OK', 201: 'created', 202: 'accepted into the queue', 304: 'not modified (ETag)',
           400: 'invalid input: every bad field is named in "errors"', 401: 'sign in first',
           403: 'not allowed: admins only, or a cookie-signed write from another site', 404: 'not found',
           409: 'conflict', 413: 'request body too large',
           429: 'too many requests ("retry_after" seconds)',
           503: 'a dependency is down ("component" names it)'}
ENVELOPE = {
    'type': 'object', 'required': ['code', 'msg'],
    'properties': {'code': {'type': 'integer', 'description': '100 ok; 101 a business "no"; '
                            '102-104 seckill results; otherwise the HTTP status'},
                   'msg': {'type': 'string'},
                   'errors': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                   'request_id': {'type': 'string'}},
    'additionalProperties': True,
}


class Undocumented(Exception):
    """An /api/ route without a declaration."""


def path_of(rule: str) -> tuple[str, list[dict]]:
    """A Bottle rule as an OpenAPI path and its path parameters."""
    parameters = []
    for name, kind, pattern in PARAMETER.findall(rule):
        schema: dict[str, Any] = {'type': 'string'}
        if kind == 'int':
            schema = {'type': 'integer', 'minimum': 0, 'maximum': 10**15 - 1}
        elif kind == 're':
            schema = {'type': 'string', 'enum': pattern.split('|')}
        parameters.append({'name': name, 'in': 'path', 'required': True, 'schema': schema})
    return PARAMETER.sub(r'{\1}', rule), parameters


def query_parameters(model: type[BaseModel] | None, schemas: dict) -> list[dict]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template='#/components/schemas/{model}')
    schemas.update(schema.pop('$defs', {}))
    required = set(schema.get('required', ()))
    return [{'name': name, 'in': 'query', 'required': name in required, 'schema': field}
            for name, field in schema['properties'].items()]


def refusals(doc: Route) -> set[int]:
    """What the sign-in a route requires may answer: 401 without it, 403 for someone not of a
    role a staff route admits, and 403 for a write signed by the cookie but sent from another site."""
    if doc.auth == 'public':
        return set()
    cross_site = doc.method not in SAFE_METHODS
    return {401} | ({403} if doc.auth in ROLES_OF or cross_site else set())


def operation(doc: Route, parameters: list[dict], schemas: dict) -> dict:
    statuses = sorted({200, *doc.statuses, 503} | ({400} if doc.body or doc.query else set()) | refusals(doc))
    responses = {str(status): {'description': REASONS.get(status, ''),
                               'content': {'application/json': {'schema': {'$ref': '#/components/schemas/Envelope'}}}}
                 for status in statuses}
    if 304 in statuses:
        responses['304'].pop('content')
    found: dict[str, Any] = {'summary': doc.summary, 'parameters': parameters + query_parameters(doc.query, schemas),
                             'responses': responses, 'tags': [doc.auth]}
    if doc.auth != 'public':
        found['security'] = [{'bearer': []}, {'cookie': []}]
    if doc.body is not None:
        schemas[doc.body.__name__] = doc.body.model_json_schema(ref_template='#/components/schemas/{model}')
        schemas.update(schemas[doc.body.__name__].pop('$defs', {}))
        found['requestBody'] = {'required': True, 'content': {'application/json': {
            'schema': {'$ref': f'#/components/schemas/{doc.body.__name__}'}}}}
    return found


def document(app: Bottle, base_url: str) -> dict:
    """The OpenAPI 3.1 document of app's /api/ routes.

    :raise Undocumented: naming a route without a declaration.
    """
    paths: dict[str, dict] = {}
    schemas: dict[str, Any] = {'Envelope': ENVELOPE}
    for route in app.routes:
        if not route.rule.startswith('/api/v1/'):  # /api/docs is a page
            continue
        doc = route.config.get('declared')
        if not isinstance(doc, Route) or not doc.summary:
            raise Undocumented(f'{route.method} {route.rule} has no route declaration')
        path, parameters = path_of(route.rule)
        paths.setdefault(path, {})[route.method.lower()] = operation(doc, parameters, schemas)
    return {
        'openapi': '3.1.0',
        'info': {'title': 'Sprig', 'version': '1', 'description': 'A self-hosted course shop. Every answer is '
                 'the JSON envelope {"code", "msg", ...}; see the Envelope schema.'},
        'servers': [{'url': base_url}],
        'paths': paths,
        'components': {'schemas': schemas, 'securitySchemes': {
            'bearer': {'type': 'http', 'scheme': 'bearer', 'description': 'the token of POST /api/v1/user/login'},
            'cookie': {'type': 'apiKey', 'in': 'cookie', 'name': 'sprig_token'}}},
    }


def spec_of(app: Bottle, base_url: str) -> dict:
    """The app's document, built when first asked (every route is mounted by then)."""
    if 'sprig.openapi' not in app.config:
        app.config['sprig.openapi'] = document(app, base_url)
    return app.config['sprig.openapi']


@ROUTES.get('/api/v1/openapi.json', 'This document (OpenAPI 3.1)')
def openapi_json(settings: Settings) -> dict:
    return spec_of(request.app, settings.app.public_url)


@ROUTES.get('/api/docs')
def api_docs(settings: Settings, render: Callable[..., str]) -> str:
    return render('api_docs.html', spec=spec_of(request.app, settings.app.public_url))
