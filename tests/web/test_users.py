"""Users and SMS codes through the API: every validation rule, conflicts, codes, tokens and limits."""
import functools
import json
import subprocess
import threading
import time

import pytest
import webtest
from conftest import SECRET, free_port, make_settings, process_env, python, together, waitress_thread
from test_seckill import drain

import app as sprig_app
import models
from models import Token, User, database
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR
from sprig.shop.accounts import hash_password, verify_password
from sprig.web.routing import Route

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

MOBILE = '13800138000'
PASSWORD = 'correct horse 1'


def make_client(tmp_path, **env) -> webtest.TestApp:
    settings = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true',
                             SPRIG_SMS_OUTBOX=str(tmp_path / 'outbox.jsonl'), **env)
    application = sprig_app.create_app(settings)
    create_tables()
    return webtest.TestApp(application, extra_environ={'REMOTE_ADDR': '10.0.0.1'})


@pytest.fixture
def client(tmp_path):
    return make_client(tmp_path)


def last_code(tmp_path, mobile: str = MOBILE, scene: str = 'register') -> str:
    """The newest code the console backend wrote to the outbox for mobile and scene."""
    lines = [json.loads(line) for line in (tmp_path / 'outbox.jsonl').read_text().splitlines()]
    return [m for m in lines if m['mobile'] == mobile and m['scene'] == scene][-1]['code']


def send_code(client, mobile: str = MOBILE, scene: str = 'register', status: int = 202):
    return client.post_json('/api/v1/user/sms', {'mobile': mobile, 'scene': scene}, status=status)


def registration(code: str, **changes) -> dict:
    body = {'username': 'alice_01', 'password': PASSWORD, 'password2': PASSWORD, 'mobile': MOBILE,
            'sms_code': code, 'allow': True}
    return {**body, **changes}


def register(client, tmp_path, **changes) -> dict:
    send_code(client, changes.get('mobile', MOBILE))
    body = registration(last_code(tmp_path, changes.get('mobile', MOBILE)), **changes)
    return client.post_json('/api/v1/user/register', body, status=201).json


def wrong(code: str) -> str:
    return f'{(int(code) + 1) % 10**6:06d}'


# Registration ------------------------------------------------------------------------------------

def test_register_signs_in_and_stores_a_slow_hash(client, tmp_path):
    body = register(client, tmp_path, email='alice@example.com')
    assert body['code'] == 100 and body['username'] == 'alice_01' and len(body['token']) >= 40
    me = client.get('/api/v1/user/me', headers={'Authorization': f'Bearer {body["token"]}'}).json
    assert me['result']['mobile'] == MOBILE and me['result']['created'].endswith('+00:00')
    with database.connection_context():
        user = User.get(User.username == 'alice_01')
        assert user.password_hash.startswith('scrypt$') and PASSWORD not in user.password_hash
        assert Token.get().digest != body['token']  # only a keyed hash is stored


@pytest.mark.parametrize('changes, field, message', [
    ({'username': 'abcd'}, 'username', '5-20 letters'),
    ({'username': 'a' * 21}, 'username', '5-20 letters'),
    ({'username': 'bad name'}, 'username', '5-20 letters'),
    ({'username': '13900139000'}, 'username', 'must not be a mobile number'),
    ({'password': 'short', 'password2': 'short'}, 'password', '8-64 characters'),
    ({'password': 'x' * 65, 'password2': 'x' * 65}, 'password', '8-64 characters'),
    ({'password2': 'something else'}, 'password2', 'the two passwords differ'),
    ({'mobile': '12800138000'}, 'mobile', '11-digit mobile number'),
    ({'mobile': 13800138000}, 'mobile', 'must be text'),
    ({'sms_code': '12345'}, 'sms_code', '6 digits'),
    ({'allow': False}, 'allow', 'accept the terms'),
    ({'allow': 'yes'}, 'allow', 'must be true or false'),
    ({'email': 'not-an-email'}, 'email', 'e-mail address'),
    ({'extra': 1}, 'extra', 'unknown field'),
])
def test_each_registration_rule(client, changes, field, message):
    res = client.post_json('/api/v1/user/register', registration('123456', **changes), status=400)
    assert res.json['code'] == 400 and message in res.json['errors'][field]


def test_every_missing_field_is_named_at_once(client):
    res = client.post_json('/api/v1/user/register', {}, status=400)
    assert set(res.json['errors']) == {'username', 'password', 'password2', 'mobile', 'sms_code', 'allow'}
    assert set(res.json['errors'].values()) == {'required'}


@pytest.mark.parametrize('taken', ['username', 'mobile', 'email'])
def test_conflicts_answer_409_and_keep_the_code(client, tmp_path, taken):
    register(client, tmp_path, email='alice@example.com')
    other = {'username': 'bobby_02', 'mobile': '13900139000', 'email': 'bob@example.com'}
    send_code(client, other['mobile'])
    clash = {**other, taken: {'username': 'alice_01', 'mobile': MOBILE, 'email': 'alice@example.com'}[taken]}
    if taken == 'mobile':
        send_code(client, MOBILE, status=409)  # no code is sent to a registered mobile
    body = registration(last_code(tmp_path, other['mobile']), **clash)
    res = client.post_json('/api/v1/user/register', body, status=409)
    assert taken in res.json['errors']
    if taken != 'mobile':  # the code was not spent: the corrected form goes through
        client.post_json('/api/v1/user/register', registration(body['sms_code'], **other), status=201)


def test_twenty_concurrent_registrations_of_one_username(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_PER_ADDRESS_HOURLY='0')
    mobiles = [f'1380013{i:04d}' for i in range(20)]
    bodies = []
    for mobile in mobiles:
        send_code(client, mobile)
        bodies.append(registration(last_code(tmp_path, mobile), mobile=mobile, username='popular'))
    with waitress_thread(client.app, threads=8) as server:
        statuses = together([functools.partial(post, server.effective_port, '/api/v1/user/register', body)
                             for body in bodies])
    assert sorted(statuses) == [201] + [409] * 19
    with database.connection_context():
        assert User.select().where(User.username == 'popular').count() == 1


def post(port: int, path: str, body: dict) -> int:
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request('POST', path, json.dumps(body), {'Content-Type': 'application/json'})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


# Codes -------------------------------------------------------------------------------------------

def test_wrong_code_then_too_many_attempts(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_MAX_ATTEMPTS='3')
    send_code(client)
    code = last_code(tmp_path)
    for left in (2, 1):
        res = client.post_json('/api/v1/user/register', registration(wrong(code)), status=400)
        assert res.json['errors']['sms_code'] == f'wrong code ({left} tries left)'
    res = client.post_json('/api/v1/user/register', registration(wrong(code)), status=400)
    assert 'too many wrong codes' in res.json['errors']['sms_code']
    res = client.post_json('/api/v1/user/register', registration(code), status=400)  # dead now
    assert 'request a new one' in res.json['errors']['sms_code']


def test_expired_code(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_CODE_TTL='1')
    send_code(client)
    time.sleep(1.3)
    res = client.post_json('/api/v1/user/register', registration(last_code(tmp_path)), status=400)
    assert 'expired' in res.json['errors']['sms_code']


def test_code_is_single_use(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_RESEND_INTERVAL='0')
    register(client, tmp_path)
    client.post('/api/v1/user/logout')
    send_code(client, scene='login')
    code = last_code(tmp_path, scene='login')
    client.post_json('/api/v1/user/login/sms', {'mobile': MOBILE, 'sms_code': code})
    res = client.post_json('/api/v1/user/login/sms', {'mobile': MOBILE, 'sms_code': code}, status=401)
    assert 'request a new one' in res.json['msg']


def test_a_register_code_does_not_sign_in(client, tmp_path):
    send_code(client, '13900139000')  # not registered: a register code, not a login one
    res = client.post_json('/api/v1/user/login/sms',
                           {'mobile': '13900139000', 'sms_code': last_code(tmp_path, '13900139000')},
                           status=401)
    assert res.json['code'] == 401


def test_resend_too_soon_is_429_with_retry_after(client):
    send_code(client)
    res = send_code(client, status=429)
    assert res.json['code'] == 429 and 55 <= res.json['retry_after'] <= 60
    assert res.headers['Retry-After'] == str(res.json['retry_after'])


def test_hourly_cap_per_client_address(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_PER_ADDRESS_HOURLY='2')
    send_code(client, '13900139001')
    send_code(client, '13900139002')
    res = send_code(client, '13900139003', status=429)
    assert res.json['retry_after'] > 0 and 'this address' in res.json['msg']
    other = client.post_json('/api/v1/user/sms', {'mobile': '13900139003', 'scene': 'register'},
                             extra_environ={'REMOTE_ADDR': '10.0.0.2'}, status=202)
    assert other.json['code'] == 100


def test_send_code_answers_with_a_task_id_and_the_code_stays_out_of_the_answer(client, tmp_path):
    res = send_code(client)
    assert res.json['msg'] == 'sent' and len(res.json['task_id']) >= 32
    assert last_code(tmp_path) not in res.text


def test_login_code_for_an_unregistered_mobile_is_101(client):
    assert send_code(client, scene='login', status=200).json == {
        'code': 101, 'msg': 'mobile not registered', 'errors': {'mobile': 'no account has this number: register first'}}


@pytest.mark.parametrize('body', [{'mobile': MOBILE}, {'mobile': MOBILE, 'scene': 'signup'}, {'scene': 'login'}])
def test_send_code_validation(client, body):
    assert client.post_json('/api/v1/user/sms', body, status=400).json['code'] == 400


# Mobile check ------------------------------------------------------------------------------------

def test_mobile_check(client, tmp_path):
    assert client.get(f'/api/v1/user/mobile?mobile={MOBILE}').json['code'] == 101
    register(client, tmp_path)
    assert client.get(f'/api/v1/user/mobile?mobile={MOBILE}').json['code'] == 100
    assert client.get('/api/v1/user/mobile?mobile=abc', status=400).json['errors'] == {
        'mobile': 'must be an 11-digit mobile number starting with 13 to 19'}
    assert 'unknown field' in client.get(f'/api/v1/user/mobile?mobile={MOBILE}&x=1', status=400).text


def test_mobile_lookups_are_rate_limited(tmp_path):
    client = make_client(tmp_path, SPRIG_AUTH_LOOKUPS_PER_MINUTE='3')
    for _ in range(3):
        client.get(f'/api/v1/user/mobile?mobile={MOBILE}')
    assert client.get(f'/api/v1/user/mobile?mobile={MOBILE}', status=429).json['retry_after'] >= 1


# Login, tokens, logout ---------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['alice_01', MOBILE, 'alice@example.com'])
def test_password_login_by_username_mobile_or_email(client, tmp_path, name):
    register(client, tmp_path, email='alice@example.com')
    res = client.post_json('/api/v1/user/login', {'username': name, 'password': PASSWORD})
    assert res.json['username'] == 'alice_01' and res.json['token']


@pytest.mark.parametrize('name, password', [('alice_01', 'wrong password'), ('nobody_here', PASSWORD),
                                            ('13900139000', PASSWORD), ('x@example.com', PASSWORD)])
def test_wrong_pairs_get_one_generic_401(client, tmp_path, name, password):
    register(client, tmp_path)
    res = client.post_json('/api/v1/user/login', {'username': name, 'password': password}, status=401)
    assert res.json == {'code': 401, 'msg': 'wrong username or password'}


def test_disabled_user_cannot_sign_in_and_loses_its_tokens(client, tmp_path):
    token = register(client, tmp_path)['token']
    with database.connection_context():
        User.update(is_active=False).execute()
    client.post_json('/api/v1/user/login', {'username': 'alice_01', 'password': PASSWORD}, status=401)
    client.get('/api/v1/user/me', headers={'Authorization': f'Bearer {token}'}, status=401)


def test_token_expires(tmp_path):
    client = make_client(tmp_path, SPRIG_AUTH_TOKEN_TTL='60')
    token = register(client, tmp_path)['token']
    with database.connection_context():
        Token.update(expires=models.utcnow()).execute()  # as if 60 s had passed
    res = client.get('/api/v1/user/me', headers={'Authorization': f'Bearer {token}'}, status=401)
    assert 'expired' in res.json['msg']


def test_logout_revokes_the_token_and_clears_the_cookie(client, tmp_path):
    token = register(client, tmp_path)['token']
    bearer = {'Authorization': f'Bearer {token}'}
    res = client.post('/api/v1/user/logout', headers=bearer)
    assert 'sprig_token=""; expires=Thu, 01 Jan 1970' in res.headers['Set-Cookie']
    client.get('/api/v1/user/me', headers=bearer, status=401)
    assert client.post('/api/v1/user/logout').json['code'] == 100  # idempotent


def test_cookie_is_httponly_and_lax_and_serves_the_api(client, tmp_path):
    register(client, tmp_path)
    cookie = next(c for c in client.cookiejar if c.name == 'sprig_token')
    assert cookie.has_nonstandard_attr('HttpOnly') and cookie.get_nonstandard_attr('SameSite') == 'lax'
    assert client.get('/api/v1/user/me').json['result']['username'] == 'alice_01'


def test_cookie_writes_from_another_site_are_refused(client, tmp_path):
    register(client, tmp_path)
    res = client.post('/api/v1/user/logout', headers={'Origin': 'https://evil.example'}, status=403)
    assert res.json['code'] == 403
    assert client.get('/api/v1/user/me').json['code'] == 100  # still signed in


def test_garbage_tokens_are_401(client):
    for header in ('Bearer ', 'Bearer nonsense', 'Basic abc'):
        assert client.get('/api/v1/user/me', headers={'Authorization': header}, status=401).json['code'] == 401


def test_secure_cookie_when_the_site_is_https(tmp_path):
    client = make_client(tmp_path, SPRIG_APP_BASE_URL='https://shop.example')
    res = client.post_json('/api/v1/user/register', registration('000000'), status=400)
    assert res.json['code'] == 400
    send_code(client)
    res = client.post_json('/api/v1/user/register', registration(last_code(tmp_path)), status=201)
    assert '; secure' in res.headers['Set-Cookie'].lower()


# Passwords and admins ----------------------------------------------------------------------------

def test_password_hashes_are_salted_and_compared_by_value():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert verify_password(PASSWORD, first) and not verify_password('other password', first)
    assert not verify_password(PASSWORD, 'garbage')


def run_app(tmp_path, *args: str, stdin: str = '') -> subprocess.CompletedProcess:
    return subprocess.run(python('app.py', *args), cwd=PROJECT_DIR, input=stdin, capture_output=True,
                          text=True, timeout=60, env=process_env(tmp_path, SPRIG_APP_SECRET_KEY=SECRET))


def test_create_admin_from_the_command_line(tmp_path):
    done = run_app(tmp_path, 'create-admin', 'root_admin', '--password-stdin', '--mobile', MOBILE,
                   stdin='admin password 1\n')
    assert done.returncode == 0 and 'admin root_admin created' in done.stdout, done.stderr
    assert run_app(tmp_path, 'create-admin', 'root_admin', '--password-stdin',
                   stdin='new password 22\n').stdout.strip() == 'admin root_admin updated'
    bad = run_app(tmp_path, 'create-admin', 'x', '--password-stdin', stdin='short\n')
    assert bad.returncode == 1 and 'username:' in bad.stderr and 'password:' in bad.stderr
    assert 'Traceback' not in bad.stderr
    client = make_client(tmp_path, SPRIG_APP_SECRET_KEY=SECRET)
    res = client.post_json('/api/v1/user/login', {'username': MOBILE, 'password': 'new password 22'})
    assert client.get('/api/v1/user/me', headers={'Authorization': f'Bearer {res.json["token"]}'}
                      ).json['result']['is_admin'] is True


def test_admin_routes_check_is_admin(tmp_path):
    client = make_client(tmp_path)
    client.app.route('/api/v1/test/admin', callback=lambda user: {'code': 100, 'who': user.username},
                     declared=Route('GET', '/api/v1/test/admin', None, 'a test route', auth='admin'))
    assert client.get('/api/v1/test/admin', status=401).json['code'] == 401
    register(client, tmp_path)
    assert client.get('/api/v1/test/admin', status=403).json == {'code': 403, 'msg': 'admins only'}
    with database.connection_context():
        User.update(role='admin').execute()
    assert client.get('/api/v1/test/admin').json['who'] == 'alice_01'


# Hardening found by review ------------------------------------------------------------------------

@pytest.mark.parametrize('path, body, field', [
    ('/api/v1/user/register', registration('123456', email='\ud800@a.bc'), 'email'),
    ('/api/v1/user/register', registration('123456', email='a' * 250 + '@b.cd'), 'email'),
    ('/api/v1/user/login', {'username': 'ab\u0000cdef', 'password': PASSWORD}, 'username'),
    ('/api/v1/user/sms', {'mobile': '13٨٠٠١٣٨٠٠٠', 'scene': 'register'}, 'mobile'),
    ('/api/v1/user/login/sms', {'mobile': MOBILE, 'sms_code': '١٢٣٤٥٦'}, 'sms_code'),
])
def test_unstorable_or_foreign_characters_are_400(client, path, body, field):
    assert field in client.post_json(path, body, status=400).json['errors']


def test_concurrent_guesses_cannot_beat_the_attempt_limit(tmp_path):
    from sprig.cache.store import cache
    from sprig.shop.sms import CodeRejected, Codes
    settings = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_SMS_MAX_ATTEMPTS='5')
    sprig_app.create_app(settings)
    codes = Codes(cache, settings)
    right = codes.issue(MOBILE, 'login')
    guesses = [wrong(right)] * 29 + [right]
    outcomes, barrier = [], threading.Barrier(len(guesses))

    def guess(code):
        barrier.wait()
        try:
            codes.check(MOBILE, 'login', code)
            outcomes.append('accepted')
        except CodeRejected as exc:
            outcomes.append(str(exc))
    threads = [threading.Thread(target=guess, args=(g,)) for g in guesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    compared = [o for o in outcomes if o == 'accepted' or o.startswith('wrong code')]
    assert len(compared) <= 5  # five counted tries at most; the code dies with the fifth (unless it was right)


def test_enumeration_through_send_code_is_throttled(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_PER_ADDRESS_HOURLY='2')
    register(client, tmp_path)
    send_code(client, MOBILE, status=409)
    assert send_code(client, MOBILE, status=429).json['code'] == 429


def test_codes_per_mobile_per_day(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_PER_MOBILE_DAILY='1', SPRIG_SMS_RESEND_INTERVAL='0')
    send_code(client)
    assert 'today' in send_code(client, status=429).json['msg']


def test_password_sign_in_is_throttled_per_account_and_per_address(tmp_path):
    # The per-address limit counts in fixed minutes: wait for a fresh one, so that the seven
    # attempts (each a 50 ms scrypt hash, slower on a loaded machine) share it.
    time.sleep(max(0.0, 60 - time.time() % 60 + 0.05) if time.time() % 60 > 50 else 0)
    client = make_client(tmp_path, SPRIG_AUTH_LOGIN_FAILURES='3', SPRIG_AUTH_LOGINS_PER_MINUTE='6')
    register(client, tmp_path)
    for _ in range(3):
        client.post_json('/api/v1/user/login', {'username': 'alice_01', 'password': 'bad password'}, status=401)
    locked = client.post_json('/api/v1/user/login', {'username': 'ALICE_01', 'password': PASSWORD}, status=429)
    assert locked.json['retry_after'] > 0  # even the right password waits
    others = [client.post_json('/api/v1/user/login', {'username': f'nobody_{i}', 'password': 'x'}, status='*')
              for i in range(3)]
    assert [res.status_int for res in others] == [401, 401, 429]  # six attempts from this address


def test_next_never_leaves_the_site(client, tmp_path):
    register(client, tmp_path)
    for target in ('/%09/evil.example', '//evil.example', '/%0a/evil.example', 'https://evil.example',
                   '/\\evil.example'):
        res = client.get(f'/login?next={target}', status=302)
        assert res.headers['Location'] in ('http://localhost/', 'http://localhost:80/'), target
    assert client.get('/login?next=/courses/free', status=302).headers['Location'].endswith('/courses/free')


def test_same_site_write_behind_a_host_rewriting_proxy(tmp_path):
    client = make_client(tmp_path, SPRIG_APP_BASE_URL='https://shop.example')
    register(client, tmp_path)
    res = client.post('/api/v1/user/logout', headers={'Origin': 'https://shop.example', 'Host': '127.0.0.1:8080'})
    assert res.json['code'] == 100


def test_create_admin_reactivates_and_signs_out_old_sessions(tmp_path):
    client = make_client(tmp_path)
    token = register(client, tmp_path)['token']
    with database.connection_context():
        User.update(is_active=False).execute()
    from sprig.shop.accounts import save_admin
    with database.connection_context():
        assert save_admin('alice_01', 'brand new password') is False
        user = User.get(User.username == 'alice_01')
        assert user.is_active and user.is_admin and not Token.select().where(Token.user == user).exists()
    client.get('/api/v1/user/me', headers={'Authorization': f'Bearer {token}'}, status=401)


def queued_client(tmp_path, **env) -> webtest.TestApp:
    """make_client on a real queue (records kept), drained by drain()."""
    settings = make_settings(tmp_path, SPRIG_SMS_OUTBOX=str(tmp_path / 'outbox.jsonl'), **env)
    application = sprig_app.create_app(settings)
    create_tables()
    return webtest.TestApp(application, extra_environ={'REMOTE_ADDR': '10.0.0.1'})


def test_the_page_that_asked_learns_whether_its_code_was_delivered(tmp_path):
    client = queued_client(tmp_path)
    sent = send_code(client).json
    status = client.get(f'/api/v1/user/sms/status?task_id={sent["task_id"]}&receipt={sent["receipt"]}').json
    assert status == {'code': 102, 'msg': 'sending'}
    drain()
    status = client.get(f'/api/v1/user/sms/status?task_id={sent["task_id"]}&receipt={sent["receipt"]}').json
    assert status == {'code': 100, 'msg': 'delivered'}
    stranger = client.get(f'/api/v1/user/sms/status?task_id={sent["task_id"]}&receipt=guessed', status=404)
    assert stranger.json['code'] == 404  # the task id alone tells nothing


def test_a_code_that_could_not_be_sent_says_so_and_may_be_asked_again(tmp_path):
    client = queued_client(tmp_path, SPRIG_SMS_BACKEND='tencent', SPRIG_SMS_SEND_RETRIES='0',
                         SPRIG_SMS_TENCENT_ENDPOINT=f'http://127.0.0.1:{free_port()}',  # nobody there
                         **{f'SPRIG_SMS_TENCENT_{key}': 'x' for key in ('SECRET_ID', 'SECRET_KEY', 'APP_ID',
                                                                          'SIGN_NAME', 'TEMPLATE_ID')})
    sent = send_code(client).json
    drain()  # the send fails at once: nobody at the endpoint, no retry left
    status = client.get(f'/api/v1/user/sms/status?task_id={sent["task_id"]}&receipt={sent["receipt"]}').json
    assert status == {'code': 104, 'msg': 'could not be sent'}
    assert send_code(client).json['code'] == 100  # not "a code was just sent": none arrived
