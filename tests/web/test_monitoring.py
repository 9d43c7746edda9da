"""Monitoring: /metrics scraped from two web processes and a consumer after real traffic, its token
and address checks, and JSON log lines that carry a request's id into the task it enqueued."""
import json
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import webtest
from conftest import free_port, huey_consumer, make_settings, process_env, python, wait_http, wait_until

import app as sprig_app
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR

TOKEN = 'metrics-' + secrets.token_hex(12)
SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def scrape(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + '/metrics', headers=headers), timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value} of a scrape in Prometheus' text format."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith('#'):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ''))
            found[match.group(1), labels] = float(match.group(3))
    return found


def value(found: dict, metric: str, **labels) -> float:
    return sum(v for (n, have), v in found.items() if n == metric and set(labels.items()) <= have)


def get(url: str, headers: dict | None = None) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as res:
        res.read()
        return res.status


def test_metrics_from_two_web_processes_and_a_consumer_are_summed(spawn, tmp_path):
    env = process_env(tmp_path, SPRIG_METRICS_TOKEN=TOKEN)
    port = free_port()
    site = f'http://127.0.0.1:{port}'
    web = spawn(python('app.py', 'serve', '--no-consumer', '--processes', '2', '--port', str(port)), env, 'web')
    wait_http(site + '/api/v1/health', web)
    spawn(huey_consumer('tasks.huey', '-w', '2', '-k', 'thread', '-m', '1'), env, 'consumer')
    for _ in range(3):
        done = subprocess.run(python('app.py', 'ping', '--timeout', '20'), env=env, cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=40)
        assert done.returncode == 0, done.stderr
    for _ in range(60):  # a new connection each: the kernel spreads them over both processes
        assert get(site + '/api/v1/home/banners') == 200

    pids = wait_until(lambda: {path.stem.rsplit('_', 1)[-1] for path in (tmp_path / 'metrics').glob('counter_*.db')}
                      if len(list((tmp_path / 'metrics').glob('counter_*.db'))) >= 3 else None,
                      10, 'counters from two web processes and a consumer')
    assert len(pids) >= 3, pids
    status, text = scrape(site)
    assert status == 200, text
    found = wait_until(lambda: (found := samples(scrape(site)[1])) and value(found, 'sprig_consumer_leader') and found,
                       15, 'a leader')  # the consumer takes the lease within a beat or two
    assert value(found, 'sprig_http_requests_total', route='/api/v1/home/banners', status='200') == 60
    assert value(found, 'sprig_http_request_duration_seconds_count', route='/api/v1/home/banners') == 60
    assert value(found, 'sprig_tasks_total', name='ping', outcome='succeeded') == 3  # counted by the consumer
    assert value(found, 'sprig_task_duration_seconds_count', name='ping') == 3
    assert value(found, 'sprig_cache_reads_total', outcome='hit') >= 58  # one miss per web process at most
    assert value(found, 'sprig_consumers_alive') == 1
    assert value(found, 'sprig_consumer_leader') == 1 and value(found, 'sprig_queue_pending') == 0
    again = samples(scrape(site)[1])  # a second scrape, perhaps from the other process: the same sums
    assert value(again, 'sprig_http_requests_total', route='/api/v1/home/banners') == 60
    assert value(again, 'sprig_http_requests_total', route='/metrics') >= 1

    assert scrape(site, token=None)[0] == 403
    assert scrape(site, token='x' * len(TOKEN))[0] == 403
    assert 'sprig_http' not in scrape(site, token=None)[1]


def metrics_client(tmp_path, **env) -> webtest.TestApp:
    client = webtest.TestApp(sprig_app.create_app(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', **env)),
                             extra_environ={'REMOTE_ADDR': '10.1.2.3'})
    create_tables()
    return client


def test_metrics_are_off_without_a_token_and_checked_by_address(tmp_path):
    import tasks
    off = metrics_client(tmp_path / 'off')
    assert off.get('/metrics', status=404).json['msg'].startswith('metrics are off')
    allowed = metrics_client(tmp_path / 'on', SPRIG_METRICS_TOKEN=TOKEN, SPRIG_METRICS_ALLOW='10.0.0.0/8, ::1')
    bearer = {'Authorization': f'Bearer {TOKEN}'}
    assert 'sprig_queue_pending' in allowed.get('/metrics', headers=bearer).text
    elsewhere = metrics_client(tmp_path / 'on', SPRIG_METRICS_TOKEN=TOKEN, SPRIG_METRICS_ALLOW='192.168.0.0/16')
    elsewhere.get('/metrics', headers=bearer, status=403)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))  # metrics off again


def test_json_logs_parse_line_by_line_and_carry_the_request_id_into_its_task(spawn, tmp_path):
    port = free_port()
    site = f'http://127.0.0.1:{port}'
    env = process_env(tmp_path, SPRIG_APP_LOG_FORMAT='json', SPRIG_APP_ACCESS_LOG='true')
    server = spawn(python('app.py', '--port', str(port)), env, 'server')
    wait_http(site + '/api/v1/health', server)
    body = json.dumps({'mobile': '13800138077', 'scene': 'register'}).encode()
    request = urllib.request.Request(site + '/api/v1/user/sms', data=body, method='POST', headers={
        'Content-Type': 'application/json', 'X-Request-ID': 'req-from-the-test-1'})
    with urllib.request.urlopen(request, timeout=10) as res:
        task_id = json.loads(res.read())['task_id']
    wait_until(lambda: 'your code is' in server.stderr(), 15, 'the SMS task ran')
    time.sleep(0.2)
    server.stop()
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]  # every line is JSON
    access = [line for line in lines if line['logger'] == 'sprig.access' and line.get('route') == '/api/v1/user/sms']
    assert len(access) == 1, access
    assert access[0] | {'duration_ms': 0, 'time': ''} == access[0] | {
        'request_id': 'req-from-the-test-1', 'method': 'POST', 'status': 202, 'duration_ms': 0, 'time': ''}
    assert isinstance(access[0]['duration_ms'], float) and access[0]['level'] == 'INFO'
    sent = [line for line in lines if 'your code is' in line['message']]
    assert len(sent) == 1 and sent[0]['task_id'] == task_id and sent[0]['task'] == 'send_sms_code'
    assert sent[0]['request_id'] == 'req-from-the-test-1'  # the request's id reached its task
    assert any(line['logger'].startswith('huey') and line.get('task_id') == task_id for line in lines)


def test_the_grafana_dashboard_reads_only_metrics_sprig_exports(tmp_path):
    import tasks
    from sprig.metrics import metrics
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_METRICS_TOKEN=TOKEN))
    exported = {'sprig_queue_pending', 'sprig_queue_scheduled', 'sprig_consumers_alive', 'sprig_consumer_leader'}
    for metric in (metrics.requests, metrics.latency, metrics.tasks, metrics.run_time, metrics.cache, metrics.presses):
        exported |= {metric._name + suffix for suffix in ('_total', '_bucket', '_count', '_sum')}
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))
    dashboard = json.loads((PROJECT_DIR / 'docs' / 'grafana-dashboard.json').read_text())
    used = {name for panel in dashboard['panels'] for target in panel['targets']
            for name in re.findall(r'\bsprig_\w+', target['expr'])}
    assert used and used <= exported, used - exported
