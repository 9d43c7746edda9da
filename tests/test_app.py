"""The envelope of API.md: every error is JSON under /api/ with the right status, HTML elsewhere."""
import http.client
import json
import logging

import peewee
import pytest
import webtest
from conftest import make_settings, waitress_thread

import app as sprig_app
from sprig.db.schema import create_tables
from sprig.web.envelope import ApiError, json_body, ok

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


@pytest.fixture
def app(settings):
    """The real app plus two routes that exist only to exercise the machinery."""
    application = sprig_app.create_app(settings)
    create_tables()

    @application.post('/api/v1/test/echo')
    def echo():
        return ok(got=json_body(1024))

    @application.get('/api/v1/test/crash')
    def crash():
        raise RuntimeError('boom: secret detail')

    @application.get('/api/v1/test/db-down')
    def db_down():
        raise peewee.OperationalError('connection refused')

    @application.get('/api/v1/test/conflict')
    def conflict():
        raise ApiError(409, 'username taken', errors={'username': 'taken'})

    return application


def assert_envelope(res, status: int) -> dict:
    assert res.status_int == status
    assert res.content_type == 'application/json'
    body = res.json
    assert body['code'] == status and body['msg']
    assert 'Traceback' not in res.text
    return body


def test_health_reports_each_component(client):
    res = client.get('/api/v1/health')
    assert res.json == {'code': 100, 'msg': 'ok',
                        'components': {'database': 'ok', 'queue': 'ok', 'cache': 'ok', 'disk': 'ok'}}


def test_unknown_route(client):
    body = assert_envelope(client.get('/api/v1/nothing-here', status=404), 404)
    assert body['msg'] == 'not found: /api/v1/nothing-here'


def test_wrong_method(client):
    res = client.delete('/api/v1/health', status=405)
    assert 'GET' in assert_envelope(res, 405)['msg']


@pytest.mark.parametrize('body, content_type, message', [
    (b'{"a": ', 'application/json', 'malformed JSON'),
    (b'\xff\xfe', 'application/json', 'malformed JSON'),
    (b'[1, 2]', 'application/json', 'must be an object'),
    (b'[' * 1020, 'application/json', 'nested too deeply'),  # within the 1 KB limit
    (b'a=1', 'application/x-www-form-urlencoded', 'expected a JSON body'),
])
def test_bad_json_bodies(client, body, content_type, message):
    res = client.post('/api/v1/test/echo', body, headers={'Content-Type': content_type}, status=400)
    assert message in assert_envelope(res, 400)['msg']


def test_good_json_body(client):
    res = client.post_json('/api/v1/test/echo', {'name': 'Zoë'})
    assert res.json == {'code': 100, 'msg': 'ok', 'got': {'name': 'Zoë'}}


def test_oversized_body_by_declared_length(tmp_path):
    client = webtest.TestApp(sprig_app.create_app(
        make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_APP_MAX_BODY_KB='1')))
    res = client.post('/api/v1/health', b'x' * 2048, headers={'Content-Type': 'application/json'},
                      status=413)
    assert 'too large' in assert_envelope(res, 413)['msg']


def test_oversized_body_sent_chunked_to_a_real_server(app):
    with waitress_thread(app, threads=2) as server:
        conn = http.client.HTTPConnection('127.0.0.1', server.effective_port, timeout=10)
        try:
            chunks = (b'{"pad": "' + b'x' * 500, b'x' * 500, b'x' * 500 + b'"}')
            conn.request('POST', '/api/v1/test/echo', body=iter(chunks),
                         headers={'Content-Type': 'application/json'}, encode_chunked=True)
            reply = conn.getresponse()
            assert reply.status == 413
            assert json.loads(reply.read())['code'] == 413
        finally:
            conn.close()


def test_crash_answers_500_with_a_request_id_and_logs_the_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger='sprig'):
        res = client.get('/api/v1/test/crash', status=500)
    body = assert_envelope(res, 500)
    assert body['msg'] == 'internal server error'
    assert body['request_id'] == res.headers['X-Request-ID']
    assert 'secret detail' not in res.text
    logged = caplog.text
    assert body['request_id'] in logged and 'RuntimeError: boom' in logged


def test_crash_shows_the_traceback_only_in_debug(tmp_path):
    debug = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_APP_DEBUG='true')
    application = sprig_app.create_app(debug)
    application.route('/api/v1/test/crash', callback=lambda: 1 / 0)
    res = webtest.TestApp(application).get('/api/v1/test/crash', status=500)
    assert 'ZeroDivisionError' in res.json['traceback']


def test_dependency_failure_is_503_naming_the_component(client):
    body = assert_envelope(client.get('/api/v1/test/db-down', status=503), 503)
    assert body['component'] == 'database'
    assert 'connection refused' not in body['msg']


def test_api_error_carries_its_payload(client):
    body = assert_envelope(client.get('/api/v1/test/conflict', status=409), 409)
    assert body['errors'] == {'username': 'taken'}


def test_pages_get_html_error_pages_with_escaping(client):
    res = client.get('/no/<script>alert(1)</script>', status=404)
    assert res.content_type == 'text/html'
    assert '404 Not Found' in res.text
    assert '<script>alert(1)' not in res.text and '&lt;script&gt;' in res.text


def test_request_id_is_echoed_when_sane_and_replaced_when_not(client):
    echoed = client.get('/api/v1/health', headers={'X-Request-ID': 'abc-123'})
    assert echoed.headers['X-Request-ID'] == 'abc-123'
    given = client.get('/api/v1/nope', headers={'X-Request-ID': 'bad id\x7f'}, status=404)
    assert given.headers['X-Request-ID'] != 'bad id\x7f' and len(given.headers['X-Request-ID']) == 16


def test_access_log_line_per_request(tmp_path, caplog):
    client = webtest.TestApp(sprig_app.create_app(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true',
                                                                SPRIG_APP_ACCESS_LOG='true')))
    with caplog.at_level(logging.INFO, logger='sprig.access'):
        res = client.get('/api/v1/nope', status=404)
    assert "GET /api/v1/nope 404" in caplog.text and res.headers['X-Request-ID'] in caplog.text


def test_health_is_503_when_the_cache_is_down(tmp_path):
    down = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_CACHE_URL='redis://127.0.0.1:1/0')
    res = webtest.TestApp(sprig_app.create_app(down)).get('/api/v1/health', status=503)
    body = assert_envelope(res, 503)
    assert body['components']['database'] == 'ok' and body['components']['queue'] == 'ok'
    assert body['components']['cache'].startswith('CacheError')
    assert 'cache' in body['msg']


def test_home_page_and_static_assets(client):
    assert 'Sprig' in client.get('/').text
    assert client.get('/static/sprig.css').content_type == 'text/css'
    client.get('/static/../app.py', status=403)  # static_file refuses to leave static/


def test_every_answer_carries_the_security_headers(client):
    for reply in (client.get('/'), client.get('/api/v1/health'), client.get('/no/such/page', status=404),
                  client.get('/static/sprig.css')):
        csp = reply.headers['Content-Security-Policy']
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and 'unsafe-inline' not in csp
        assert reply.headers['X-Content-Type-Options'] == 'nosniff'
        assert reply.headers['Referrer-Policy'] == 'strict-origin-when-cross-origin'
        assert 'Strict-Transport-Security' not in reply.headers  # base_url is http here
