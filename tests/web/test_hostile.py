"""What the red team found (issue 16), each reproduced: a caller's refusals never cost the owner,
bad input is a 400, secrets stay out of the queue, the lockout cannot be turned against the owner."""
import json
import logging

import pytest
import webtest
from conftest import bearer, make_settings, together

import app as sprig_app
import tasks
from sprig.db.schema import create_tables
from sprig.shop import demo
from sprig.shop.accounts import save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)
MOBILE = '13800138000'


def make_client(tmp_path, **env) -> webtest.TestApp:
    settings = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_SMS_OUTBOX=str(tmp_path / 'outbox.jsonl'),
                             **env)
    application = sprig_app.create_app(settings)
    create_tables()
    return webtest.TestApp(application, extra_environ={'REMOTE_ADDR': '10.0.0.1'})


def ask_code(client, mobile: str = MOBILE):
    return client.post_json('/api/v1/user/sms', {'mobile': mobile, 'scene': 'register'}, expect_errors=True)


def test_refused_code_requests_do_not_spend_the_numbers_daily_budget(tmp_path):
    import time
    client = make_client(tmp_path, SPRIG_SMS_RESEND_INTERVAL='1', SPRIG_SMS_PER_MOBILE_DAILY='2',
                         SPRIG_SMS_PER_ADDRESS_HOURLY='0')
    burst = [ask_code(client) for _ in range(10)]  # an attacker, in a few milliseconds
    assert [answer.status_int for answer in burst].count(202) == 1
    assert all('just sent' in answer.json['msg'] for answer in burst if answer.status_int == 429)
    time.sleep(1.1)
    assert ask_code(client).status_int == 202  # the owner: the burst cost one code, not ten
    time.sleep(1.1)
    spent = ask_code(client)
    assert spent.status_int == 429 and 'codes to this number today' in spent.json['msg']


def test_the_global_hourly_budget_counts_codes_sent_to_any_number(tmp_path):
    client = make_client(tmp_path, SPRIG_SMS_GLOBAL_HOURLY='2', SPRIG_SMS_PER_ADDRESS_HOURLY='0')
    assert [ask_code(client, f'1380013800{n}').status_int for n in range(3)] == [202, 202, 429]
    assert 'the site is busy' in ask_code(client, '13800138009').json['msg']


# 4. Bad input is a 400 ------------------------------------------------------------------------------

@pytest.mark.parametrize('path', ['/api/v1/user/login', '/api/v1/user/register', '/api/v1/user/sms'])
def test_a_number_of_too_many_digits_is_a_400(tmp_path, path):
    client = make_client(tmp_path)
    body = '{"username": ' + '1' * 5000 + ', "password": "x"}'
    res = client.post(path, body, content_type='application/json', status=400)
    assert res.json['code'] == 400 and 'malformed JSON' in res.json['msg'] and 'Traceback' not in res.text


def test_a_page_past_any_number_sqlite_takes_is_a_400(tmp_path):
    client = make_client(tmp_path)
    save_admin('admin_01', 'admin password 1')
    headers = bearer(client, 'admin_01', 'admin password 1')
    res = client.get('/api/v1/admin/tasks?page=99999999999999999999', headers=headers, status=400)
    assert 'page' in res.json['errors']


def test_a_repeated_key_is_a_400(tmp_path):
    client = make_client(tmp_path)
    res = client.post('/api/v1/user/login', '{"username": "a", "username": "b", "password": "x"}',
                      content_type='application/json', status=400)
    assert res.json['msg'] == 'malformed JSON: the key "username" is given twice'


@pytest.mark.parametrize('body, field', [
    ({'item_id': True}, 'item_id'), ({'item_id': '1'}, 'item_id'), ({'item_id': 1.0}, 'item_id'),
])
def test_json_bodies_are_strictly_typed(tmp_path, body, field):
    client = make_client(tmp_path)
    save_admin('buyer_001', 'buyer password 1')
    headers = bearer(client, 'buyer_001', 'buyer password 1')
    assert field in client.post_json('/api/v1/seckill', body, headers=headers, status=400).json['errors']


def test_a_flag_is_true_or_false_not_0(tmp_path):
    client = make_client(tmp_path)
    save_admin('admin_01', 'admin password 1')
    headers = bearer(client, 'admin_01', 'admin password 1')
    body = {'title': 'T', 'image': 'static/banners/python.svg', 'is_show': 0}
    assert 'is_show' in client.post_json('/api/v1/admin/banners', body, headers=headers, status=400).json['errors']


def test_route_ids_are_ascii_digits(tmp_path):
    client = make_client(tmp_path)
    demo.seed()
    assert client.get('/api/v1/courses/3').json['result']['id'] == 3
    assert client.get('/api/v1/courses/%D9%A3', status=404).json['code'] == 404  # ARABIC-INDIC DIGIT THREE


@pytest.mark.parametrize('username, message', [
    ('\uff56\uff49\uff43\uff54\uff49\uff4d_01', 'already taken'),  # full-width: victim_01 after NFKC
    ('Victim_01', 'already taken'),  # case tells no two accounts apart
    ('vi\u0441tim_02', 'one alphabet'),  # a Cyrillic с among Latin letters
    ('\u0441\u0435\u0440\u0443\u0445', 'Latin letters'),  # Cyrillic letters that spell "cepyx"
])
def test_look_alike_usernames_are_refused(tmp_path, username, message):
    client = make_client(tmp_path)
    save_admin('victim_01', 'victim password 1')
    client.post_json('/api/v1/user/sms', {'mobile': MOBILE, 'scene': 'register'}, status=202)
    body = {'username': username, 'password': 'a password 1', 'password2': 'a password 1', 'mobile': MOBILE,
            'sms_code': '000000', 'allow': True}
    res = client.post_json('/api/v1/user/register', body, expect_errors=True)
    assert res.status_int in (400, 409) and message in res.json['errors']['username'], res.json


def test_chinese_usernames_are_welcome(tmp_path):
    client = make_client(tmp_path)
    client.post_json('/api/v1/user/sms', {'mobile': MOBILE, 'scene': 'register'}, status=202)
    code = json.loads((tmp_path / 'outbox.jsonl').read_text().splitlines()[-1])['code']
    body = {'username': '张三_python', 'password': 'a password 1', 'password2': 'a password 1', 'mobile': MOBILE,
            'sms_code': code, 'allow': True}
    assert client.post_json('/api/v1/user/register', body, status=201).json['username'] == '张三_python'


def test_control_characters_in_a_path_are_escaped_in_the_access_log(tmp_path, caplog):
    client = make_client(tmp_path, SPRIG_APP_ACCESS_LOG='true')
    with caplog.at_level(logging.INFO, logger='sprig.access'):
        client.get('/nowhere%1b[31m%00', status=404)
    line = [record.getMessage() for record in caplog.records if record.name == 'sprig.access'][-1]
    assert '\x1b' not in line and '\x00' not in line and '\\x1b[31m\\x00' in line


def test_health_says_when_the_disk_is_nearly_full(tmp_path):
    client = make_client(tmp_path, SPRIG_APP_MIN_FREE_MB=str(10**9))  # a petabyte
    res = client.get('/api/v1/health', status=503)
    assert res.json['components']['disk'].startswith('DiskFull:') and 'disk' in res.json['msg']


# 5. Secrets stay out of the queue and files are private ------------------------------------------

@pytest.mark.sqlite_only  # the files are SQLite's
def test_sms_codes_are_sealed_in_the_queue_and_the_files_are_private(tmp_path):
    settings = make_settings(tmp_path, SPRIG_SMS_OUTBOX=str(tmp_path / 'outbox.jsonl'))
    client = webtest.TestApp(sprig_app.create_app(settings), extra_environ={'REMOTE_ADDR': '10.0.0.1'})
    create_tables()
    for n in range(20):
        mobile = f'139001390{n:02d}'
        client.post_json('/api/v1/user/sms', {'mobile': mobile, 'scene': 'register'}, status=202)
    tasks.huey.writer.flush()
    while (task := tasks.huey.dequeue()) is not None:  # run them as a consumer would
        tasks.huey.execute(task)
    codes = [json.loads(line)['code'] for line in (tmp_path / 'outbox.jsonl').read_text().splitlines()]
    assert len(codes) == 20
    stored = b''.join(path.read_bytes() for path in tmp_path.glob('queue.db*'))
    assert not [code for code in codes if code.encode() in stored]
    for name in ('sprig.db', 'queue.db', 'cache.db', 'secret_key', 'outbox.jsonl'):
        assert (tmp_path / name).stat().st_mode & 0o077 == 0, name


# 6. The lockout cannot be turned against the owner -----------------------------------------------

def test_failed_sign_ins_count_per_account_and_at_once(tmp_path):
    client = make_client(tmp_path, SPRIG_AUTH_LOGIN_FAILURES='10', SPRIG_AUTH_LOGINS_PER_MINUTE='0')
    save_admin('owner_001', 'right password 1', MOBILE)
    names = ['owner_001', MOBILE, 'OWNER_001'] * 14  # 42 tries by three names, 40 at once
    answers = together([lambda name=name: client.post_json('/api/v1/user/login', {
        'username': name, 'password': 'wrong password'}, expect_errors=True).status_int for name in names])
    assert answers.count(401) == 10 and answers.count(429) == 32


def test_a_locked_account_can_still_sign_in_with_an_sms_code(tmp_path):
    client = make_client(tmp_path, SPRIG_AUTH_LOGIN_FAILURES='2')
    save_admin('owner_001', 'right password 1', MOBILE)
    for _ in range(2):
        client.post_json('/api/v1/user/login', {'username': 'owner_001', 'password': 'wrong'}, status=401)
    locked = client.post_json('/api/v1/user/login', {'username': 'owner_001', 'password': 'right password 1'},
                              status=429)
    assert locked.json['sms_login'] is True and 'SMS code' in locked.json['msg']
    client.post_json('/api/v1/user/sms', {'mobile': MOBILE, 'scene': 'login'}, status=202)
    code = json.loads((tmp_path / 'outbox.jsonl').read_text().splitlines()[-1])['code']
    assert client.post_json('/api/v1/user/login/sms', {'mobile': MOBILE, 'sms_code': code}).json['code'] == 100
