"""The OpenAPI document: every /api/v1/ route in it and nothing else, each described; a route
without a description is refused; the reference page shows them all."""
import json
import re

import pytest
from conftest import shot, start_site

from sprig.web import openapi
from sprig.web.openapi import Undocumented


def routes(app) -> set[tuple[str, str]]:
    return {(route.method.lower(), openapi.path_of(route.rule)[0]) for route in app.routes
            if route.rule.startswith('/api/v1/')}


def test_the_document_lists_every_route_and_nothing_else(app, client):
    spec = client.get('/api/v1/openapi.json').json
    assert spec['openapi'] == '3.1.0'
    documented = {(method, path) for path, operations in spec['paths'].items() for method in operations}
    assert documented == routes(app)
    for path, operations in spec['paths'].items():
        for method, operation in operations.items():
            assert operation['summary'], (method, path)
            assert '503' in operation['responses']
            if operation['tags'] == ['admin']:
                assert {'401', '403'} <= set(operation['responses'])
            body = operation.get('requestBody')
            if body:
                name = body['content']['application/json']['schema']['$ref'].split('/')[-1]
                assert spec['components']['schemas'][name]['properties'], name
    press = spec['paths']['/api/v1/seckill']['post']
    assert press['requestBody'] and {'202', '400', '401', '404'} <= set(press['responses'])
    listing = spec['paths']['/api/v1/courses']['get']
    assert {p['name'] for p in listing['parameters']} == {'q', 'kind', 'category', 'ordering', 'page', 'size'}


def test_a_route_without_a_description_is_refused(app):
    @app.get('/api/v1/undocumented')
    def undocumented() -> dict:
        return {}
    with pytest.raises(Undocumented, match='GET /api/v1/undocumented has no route declaration'):
        openapi.document(app, 'http://x')


def test_the_reference_page_shows_every_operation(client, context, spawn, tmp_path):
    page_text = client.get('/api/docs').text
    spec = client.get('/api/v1/openapi.json').json
    for path in spec['paths']:
        assert f'<code>{path}</code>' in page_text
    site = start_site(spawn, tmp_path)
    page = context.new_page()
    page.goto(site + '/api/docs')
    assert page.locator('.operation').count() == sum(len(ops) for ops in spec['paths'].values())
    shot(page, 'api-docs')


def test_the_document_says_what_the_app_enforces(client):
    spec = client.get('/api/v1/openapi.json').json
    schemas = spec['components']['schemas']
    for name, schema in schemas.items():
        if name.endswith('Change'):  # PATCH bodies: a field given must hold a value
            assert 'null' not in json.dumps(schema.get('properties', {})), name
    patterns = {field: re.compile(schemas['Register']['properties'][field]['pattern'])
                for field in ('mobile', 'sms_code')}
    assert patterns['mobile'].match('13800138000') and not patterns['mobile'].match('12800138000')
    assert patterns['sms_code'].match('123456') and not patterns['sms_code'].match('12345a')
    image = re.compile(schemas['NewBanner']['properties']['image']['pattern'])
    assert image.match('static/banners/a.svg') and not image.match('javascript:alert(1)')
    for path, operations in spec['paths'].items():
        for method, operation in operations.items():
            if method != 'get' and operation['tags'] != ['public']:  # a cookie-signed write from elsewhere
                assert '403' in operation['responses'], (method, path)
    assert '403' in spec['paths']['/api/v1/user/logout']['post']['responses']
