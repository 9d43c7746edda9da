"""Fuzzing every documented operation (Hypothesis, from the OpenAPI document): valid and invalid
bodies, queries and path values, as an admin. No answer may be a 500, and every answer must be
the JSON envelope with a status the document lists (or 304 without a body). Bounded: EXAMPLES
cases per operation (about 1,300 requests), about 15 s in all."""
import json
from urllib.parse import quote, urlencode

import pytest
import webtest
from conftest import bearer, empty_tables, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

import app as sprig_app
import tasks
from models import database
from sprig.db.schema import create_tables
from sprig.shop import demo
from sprig.shop.accounts import save_admin

pytestmark = [pytest.mark.database, pytest.mark.module_rows]  # again on PostgreSQL, one shop for all

EXAMPLES = 25
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
ALWAYS = {'401', '403', '405', '413', '429'}  # what any call may meet: auth, limits


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    empty_tables()
    data = tmp_path_factory.mktemp('fuzz')
    client = webtest.TestApp(sprig_app.create_app(make_settings(data, SPRIG_QUEUE_IMMEDIATE='true',
                                                                SPRIG_AUTH_LOGINS_PER_MINUTE='0')))
    create_tables()
    with database.connection_context():
        demo.seed()
        save_admin('admin_1', 'admin password 1')
    yield client, bearer(client, 'admin_1', 'admin password 1'), client.get('/api/v1/openapi.json').json
    tasks.configure(make_settings(data, SPRIG_QUEUE_IMMEDIATE='true'))


def operations() -> list[tuple[str, str]]:
    client = webtest.TestApp(sprig_app.create_app(tasks.settings))
    spec = client.get('/api/v1/openapi.json').json
    return [(method, path) for path, ops in spec['paths'].items() for method in ops]


def resolved(schema: dict, spec: dict) -> dict:
    """A schema with the document's components beside it, so its $refs resolve."""
    return {**schema, 'components': {'schemas': spec['components']['schemas']}}


def value_for(parameter: dict, spec: dict):
    valid = from_schema(resolved(parameter['schema'], spec))
    return st.one_of(valid, valid, st.text(max_size=12))


def test_the_shop_and_its_admin_are_there_for_the_fuzzing(site):
    """Else the fuzzing runs hollow: every admin call a 401, which any call may meet."""
    client, admin, _ = site
    assert client.get('/api/v1/admin/banners', headers=admin).json['result']
    assert client.get('/api/v1/courses?kind=actual').json['result']['count']


@pytest.mark.parametrize('method, path', operations())
def test_no_operation_answers_500_or_off_the_document(site, method, path):
    client, admin, spec = site
    operation = spec['paths'][path][method]
    body_schema = operation.get('requestBody', {}).get('content', {}).get('application/json', {}).get('schema')
    body = st.one_of(from_schema(resolved(body_schema, spec)), JSON) if body_schema else st.none()
    params = st.fixed_dictionaries({p['name']: value_for(p, spec) for p in operation['parameters']})

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(params=params, body=body)
    def call(params: dict, body) -> None:
        url = path
        query = {}
        for parameter in operation['parameters']:
            value = params[parameter['name']]
            if parameter['in'] == 'path':
                url = url.replace('{' + parameter['name'] + '}', quote(str(value), safe='') or 'x')
            else:
                query[parameter['name']] = value if isinstance(value, str) else json.dumps(value).strip('"')
        if query:
            url += '?' + urlencode(query)
        reply = client.request(url, method=method.upper(), body=None if body is None else json.dumps(body).encode(),
                               headers={**admin, 'Content-Type': 'application/json'}, expect_errors=True)
        assert reply.status_int < 500 or reply.status_int == 503, (method, url, query, body, reply.text[:300])
        if reply.status_int == 304 or path == '/api/v1/openapi.json':  # no body; the document itself
            return
        envelope = reply.json
        assert isinstance(envelope.get('code'), int) and isinstance(envelope.get('msg'), str), reply.text[:200]
        documented = set(operation['responses']) | ALWAYS | ({'404'} if '{' in path else set())
        assert str(reply.status_int) in documented, (method, url, reply.status_int, reply.text[:200])
    call()
