"""Route declarations: every route is a plain module-level function declared once, and what a
declaration says about sign-in is both enforced and documented, for every /api/ route."""
import re
import sys

import pytest
from conftest import bearer

from models import User, database
from sprig.shop.accounts import hash_password
from sprig.web.api import banners
from sprig.web.routing import Route

PARAMETER = re.compile(r'<(\w+)(?::(\w+)(?::([^>]*))?)?>')


def declared_routes(app) -> list[tuple[object, Route]]:
    return [(route, route.config['declared']) for route in app.routes]


def concrete(rule: str) -> str:
    """A path the rule matches: 1 for whole numbers, a pattern's first choice, x for the rest."""
    def example(match: re.Match) -> str:
        kind, pattern = match.group(2), match.group(3)
        return '1' if kind == 'int' else pattern.split('|')[0] if kind == 're' else 'x'
    return PARAMETER.sub(example, rule)


def test_every_route_is_declared_on_a_module_level_function(app):
    for route, declared in declared_routes(app):
        callback = declared.callback
        assert '<locals>' not in callback.__qualname__, route.rule
        assert getattr(sys.modules[callback.__module__], callback.__name__) is callback, route.rule
        assert (declared.method, declared.path) == (route.method, route.rule)


def test_sign_in_is_documented_as_it_is_enforced_for_every_route(app, client):
    with database.connection_context():
        User.create(username='plain_user', password_hash=hash_password('password 1'))
        User.create(username='editor_1', password_hash=hash_password('password 1'), role='editor')
    plain, editor = bearer(client, 'plain_user', 'password 1'), bearer(client, 'editor_1', 'password 1')
    spec = client.get('/api/v1/openapi.json').json
    checked = 0
    for route, declared in declared_routes(app):
        if not route.rule.startswith('/api/v1/'):
            continue
        path = PARAMETER.sub(r'{\1}', route.rule)
        operation = spec['paths'][path][route.method.lower()]
        assert operation['tags'] == [declared.auth], route.rule
        if declared.auth == 'public':
            assert 'security' not in operation
            continue
        assert operation['security'] and '401' in operation['responses'], route.rule
        call = getattr(client, route.method.lower())
        assert call(concrete(route.rule), status=401).json['code'] == 401, route.rule
        if declared.auth in ('editor', 'admin'):
            assert '403' in operation['responses'], route.rule
            refused = call(concrete(route.rule), headers=plain, status=403).json['msg']
            assert refused == ('admins only' if declared.auth == 'admin' else 'editors and admins only')
        if declared.auth == 'admin':
            assert call(concrete(route.rule), headers=editor, status=403).json['msg'] == 'admins only'
        checked += 1
    assert checked >= 20  # the admin routes of five tables alone are 20


def test_every_console_page_checks_its_role(app, client):
    with database.connection_context():
        User.create(username='plain_user', password_hash=hash_password('password 1'))
        User.create(username='editor_1', password_hash=hash_password('password 1'), role='editor')
    plain, editor = bearer(client, 'plain_user', 'password 1'), bearer(client, 'editor_1', 'password 1')
    pages = [(route, declared) for route, declared in declared_routes(app) if route.rule.startswith('/admin')]
    assert len(pages) >= 20
    for route, declared in pages:
        assert declared.auth in ('editor', 'admin'), route.rule
        path = concrete(route.rule)
        assert '/login?next=' in client.get(path, status=302).headers['Location']
        client.get(path, headers=plain, status=403)
        client.get(path, headers=editor, status=403 if declared.auth == 'admin' else (200, 404))


def test_a_page_that_needs_an_admin_sends_visitors_to_sign_in_and_refuses_users(app, client):
    to_login = client.get('/admin/tasks?state=failed', status=302)
    assert to_login.headers['Location'].endswith('/login?next=/admin/tasks%3Fstate%3Dfailed')
    with database.connection_context():
        User.create(username='plain_user', password_hash=hash_password('password 1'))
    assert '403' in client.get('/admin/tasks', headers=bearer(client, 'plain_user', 'password 1'), status=403).text


def test_a_declaration_refuses_an_unknown_sign_in_level():
    with pytest.raises(ValueError, match='auth must be one of public, user, editor, admin'):
        Route('GET', '/api/v1/x', lambda: None, 'x', auth='staff')


def test_a_handler_can_be_called_directly(app):
    with database.connection_context():
        created = banners.create_banner(body=banners.NewBanner(title='Direct', image='static/banners/python.svg'),
                                        user=None)  # no one: not audited
        assert created['result']['title'] == 'Direct'
        assert [row['title'] for row in banners.list_banners()['result']] == ['Direct']
