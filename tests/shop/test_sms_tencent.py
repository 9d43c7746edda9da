"""Tencent Cloud SMS: the official SDK against a local stand-in for Tencent's API, and the send task
retried by a real huey_consumer.

The stand-in is a plain HTTP server on 127.0.0.1 ([sms] tencent_endpoint = http://127.0.0.1:PORT):
it records every request and answers from a script, so a test decides when Tencent fails.
"""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import huey_consumer, make_settings, process_env, record, wait_until
from huey.exceptions import TaskException
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

import tasks
from sprig.db.schema import create_tables
from sprig.settings import SettingsError
from sprig.shop import sms

MOBILE, CODE = '13800138000', '123456'
SECRET_ID = 'AKIDtestsecretid0000000000000000'
SECRET_KEY = 'tencent-test-secret-key-never-sent'
TENCENT = {  # every tencent_* key but the endpoint, which is the stand-in's own
    'SPRIG_SMS_BACKEND': 'tencent',
    'SPRIG_SMS_TENCENT_SECRET_ID': SECRET_ID,
    'SPRIG_SMS_TENCENT_SECRET_KEY': SECRET_KEY,
    'SPRIG_SMS_TENCENT_REGION': 'ap-nanjing',
    'SPRIG_SMS_TENCENT_APP_ID': '1400000001',
    'SPRIG_SMS_TENCENT_SIGN_NAME': 'Sprig',
    'SPRIG_SMS_TENCENT_TEMPLATE_ID': '2000001',
}
WAIT = 60  # seconds: far above the retry delays (2, 4, 8 s), so only a real hang fails


def sent(code: str = 'Ok', message: str = 'send success') -> dict:
    """Tencent's answer to SendSms for one number: Code 'Ok', or the reason that number was refused."""
    return {'Response': {'SendStatusSet': [{
        'SerialNo': '5000:1', 'PhoneNumber': f'+86{MOBILE}', 'Fee': 1, 'SessionContext': '',
        'Code': code, 'Message': message, 'IsoCode': 'CN'}], 'RequestId': 'req-sent'}}


def api_error(code: str = 'InternalError', message: str = 'internal error, try again later') -> dict:
    """Tencent's answer when the whole call fails; the SDK raises TencentCloudSDKException for it."""
    return {'Response': {'Error': {'Code': code, 'Message': message}, 'RequestId': 'req-error'}}


class Handler(BaseHTTPRequestHandler):
    server: 'FakeTencent'

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        payload = json.dumps(self.server.record(self.path, dict(self.headers), body)).encode()
        self.send_response(200)
        # Exactly application/json: the SDK looks for an Error only under that content type.
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass  # the requests are recorded; no noise on stderr


class FakeTencent(ThreadingHTTPServer):
    """Tencent's SMS API on a free local port: records each request and answers from a script,
    whose last answer repeats once the others are used up."""

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.answers = [sent()]
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}'

    def script(self, *answers: dict) -> None:
        self.answers = list(answers)

    def record(self, path: str, headers: dict, body: dict) -> dict:
        with self.lock:
            self.requests.append({'path': path, 'headers': headers, 'body': body})
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def arrived(self, count: int) -> list[dict] | None:
        """The first count requests, once that many came."""
        with self.lock:
            return self.requests[:count] if len(self.requests) >= count else None

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@pytest.fixture
def tencent():
    server = FakeTencent()
    yield server
    server.close()


def tencent_env(server: FakeTencent, **extra: str) -> dict[str, str]:
    return {**TENCENT, 'SPRIG_SMS_TENCENT_ENDPOINT': server.endpoint, **extra}


@pytest.fixture
def backend(tmp_path, tencent) -> sms.TencentBackend:
    return sms.create_backend(make_settings(tmp_path, **tencent_env(tencent)))


# The backend, in this process -------------------------------------------------------------------

def test_backend_sends_one_signed_request_with_the_configured_values(backend, tencent):
    assert isinstance(backend, sms.TencentBackend)
    backend.send(MOBILE, CODE, 'register')
    [request] = tencent.requests
    assert request['path'] == '/'
    body, headers = request['body'], request['headers']
    assert body['PhoneNumberSet'] == [f'+86{MOBILE}']
    assert (body['SmsSdkAppId'], body['SignName'], body['TemplateId']) == ('1400000001', 'Sprig', '2000001')
    assert body['TemplateParamSet'] == [CODE, '5']  # [sms] code_ttl = 300 s, in minutes
    assert (headers['X-TC-Action'], headers['X-TC-Version'], headers['X-TC-Region']) == (
        'SendSms', '2021-01-11', 'ap-nanjing')
    assert headers['Authorization'].startswith('TC3-HMAC-SHA256 ')
    assert f'Credential={SECRET_ID}/' in headers['Authorization']
    assert SECRET_KEY not in json.dumps(request)  # it only signs


def test_a_refused_number_raises_send_failed_with_tencents_code(backend, tencent):
    tencent.script(sent('LimitExceeded.PhoneNumberDailyLimit', 'daily limit reached'))
    with pytest.raises(sms.SendFailed, match=r'^LimitExceeded\.PhoneNumberDailyLimit: daily limit'):
        backend.send(MOBILE, CODE, 'login')


def test_an_api_error_raises_the_sdk_exception(backend, tencent):
    tencent.script(api_error('InternalError', 'backend down'))
    with pytest.raises(TencentCloudSDKException) as caught:
        backend.send(MOBILE, CODE, 'register')
    assert (caught.value.code, caught.value.message) == ('InternalError', 'backend down')


def test_tencent_backend_requires_its_app_id(tmp_path, tencent):
    with pytest.raises(SettingsError, match=r'^\[sms\] tencent_app_id: required'):
        make_settings(tmp_path, **tencent_env(tencent, SPRIG_SMS_TENCENT_APP_ID=''))


# The task, run by a real consumer ---------------------------------------------------------------

@pytest.fixture
def producer(tmp_path):
    """Bind this process's queue to the consumer's SQLite file (not immediate): a retry with a delay
    only runs in a consumer. Other tests share the module-level huey: it goes back afterwards."""
    def bind(env: dict[str, str]) -> None:
        tasks.configure(make_settings(tmp_path, **env))
        create_tables()
    yield bind
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def start_consumer(spawn, tmp_path, env: dict[str, str]):
    return spawn(huey_consumer('-w', '1', '-k', 'thread', '-m', '1'), process_env(tmp_path, **env),
                 'consumer')


def final_error(task_id: str) -> dict | None:
    """The error Huey records once no retry is left; an attempt that will be retried records one
    too, with retries > 0."""
    try:
        tasks.huey.result(task_id, preserve=True)
    except TaskException as exc:
        return exc.metadata if exc.metadata['retries'] == 0 else None
    return None


def test_a_failed_send_is_retried_by_the_consumer_with_the_same_code(spawn, tmp_path, tencent, producer):
    tencent.script(api_error(), sent())
    env = tencent_env(tencent)
    producer(env)
    consumer = start_consumer(spawn, tmp_path, env)
    task_id = tasks.queue_sms_code(MOBILE, CODE, 'register').id
    first, second = wait_until(lambda: tencent.arrived(2), WAIT, 'no retry reached Tencent', consumer.stderr)
    assert first['body']['TemplateParamSet'] == second['body']['TemplateParamSet'] == [CODE, '5']
    done = re.compile(rf'{task_id}\b.* executed in ')  # Huey's line for an attempt that succeeded
    wait_until(lambda: done.search(consumer.stderr()), WAIT, 'the retry never succeeded', consumer.stderr)
    assert consumer.stop() == 0
    assert len(tencent.requests) == 2  # nothing after the success
    # Success. The task returns nothing, so Huey's result keeps the first attempt's error (as Huey's
    # store_intermediate_errors does); the record says what happened in the end.
    assert record(task_id).state == 'succeeded'


def test_a_send_that_always_fails_is_recorded_after_its_retries(spawn, tmp_path, tencent, producer):
    tencent.script(api_error('InternalError', 'backend down'))
    env = tencent_env(tencent, SPRIG_SMS_SEND_RETRIES='1')
    producer(env)
    consumer = start_consumer(spawn, tmp_path, env)
    result = tasks.queue_sms_code(MOBILE, CODE, 'register')
    error = wait_until(lambda: final_error(result.id), WAIT, 'no failure was recorded', consumer.stderr)
    assert consumer.stop() == 0
    assert len(tencent.requests) == 2  # the first attempt and send_retries = 1 retry
    assert 'InternalError' in error['error'] and 'backend down' in error['error']
    log = consumer.stdout() + consumer.stderr()
    assert 'code:InternalError message:backend down' in log  # Huey logs each attempt's traceback
    assert SECRET_KEY not in log


def test_configure_sets_the_send_retries(producer):
    producer({'SPRIG_SMS_SEND_RETRIES': '1'})
    assert tasks.queue_sms_code(MOBILE, CODE, 'register').task.retries == 1
