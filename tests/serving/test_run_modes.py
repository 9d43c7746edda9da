"""The three ways to run Sprig, with real processes stopped by their pid.

python app.py (SQLite everywhere, embedded consumer), also with several web processes; serve
--no-consumer beside huey_consumer on the SQLite queue and on Redis; waitress-serve with the
factory; and the app on PostgreSQL.
"""
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    SECRET,
    free_port,
    get_json,
    huey_consumer,
    process_env,
    python,
    wait_http,
)

from sprig.settings import PROJECT_DIR

ALL_OK = {'database': 'ok', 'queue': 'ok', 'cache': 'ok', 'disk': 'ok'}


def run_ping(env: dict, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(python('app.py', 'ping', '--timeout', str(timeout)), cwd=PROJECT_DIR,
                          env=env, capture_output=True, text=True, timeout=timeout + 30)


def serve(spawn, env: dict, *extra: str):
    port = free_port()
    server = spawn(python('app.py', *extra, '--port', str(port)), env, 'server')
    status, body = wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    assert (status, body['components']) == (200, ALL_OK), body
    return server


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_python_app_py_serves_runs_tasks_and_stops_cleanly(spawn, tmp_path, sig):
    env = process_env(tmp_path)
    server = serve(spawn, env)
    assert 'embedded consumer' in server.stdout() and 'http://127.0.0.1:' in server.stdout()
    pong = run_ping(env)
    assert pong.returncode == 0, pong.stderr
    assert f'pid {server.pid} in' in pong.stdout  # the server's own consumer ran it
    started = time.monotonic()
    assert server.stop(sig, timeout=10) == 0
    assert time.monotonic() - started < 5
    assert 'Traceback' not in server.stderr()
    assert (tmp_path / 'sprig.db').exists() and (tmp_path / 'queue.db').exists()


def test_ping_without_a_consumer_fails_clearly(spawn, tmp_path):
    env = process_env(tmp_path)
    serve(spawn, env, 'serve', '--no-consumer')
    started = time.monotonic()
    pong = run_ping(env, timeout=1)
    assert pong.returncode == 1
    assert 'no consumer answered within 1 s' in pong.stderr
    assert time.monotonic() - started < 10


def consumer_env(kind: str, tmp_path: Path, request, unique: str) -> dict:
    if kind == 'sqlite':
        return process_env(tmp_path)
    redis_url = request.getfixturevalue('redis_url')
    request.getfixturevalue('redis_prefix')  # deletes every key naming `unique` afterwards
    return process_env(tmp_path, SPRIG_QUEUE_URL=redis_url, SPRIG_QUEUE_NAME=unique,
                       SPRIG_CACHE_URL=redis_url, SPRIG_CACHE_PREFIX=f'{unique}:')


@pytest.mark.parametrize('kind', ['sqlite', 'redis'])
def test_web_beside_a_separate_huey_consumer(spawn, tmp_path, request, unique, kind):
    env = consumer_env(kind, tmp_path, request, unique)
    serve(spawn, env, 'serve', '--no-consumer')
    consumer = spawn(huey_consumer('-w', '2', '-k', 'thread', '-m', '1'), env, 'consumer')
    pong = run_ping(env, timeout=20)
    assert pong.returncode == 0, pong.stderr + consumer.stderr()
    assert f'pid {consumer.pid} in' in pong.stdout
    assert consumer.stop(signal.SIGINT) == 0


def test_waitress_serve_with_the_factory(spawn, tmp_path):
    port = free_port()
    waitress_serve = str(Path(sys.executable).parent / 'waitress-serve')
    server = spawn([waitress_serve, f'--listen=127.0.0.1:{port}', '--call', 'app:make_app'],
                   process_env(tmp_path), 'waitress')
    status, body = wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    assert (status, body['components']) == (200, ALL_OK)


def test_app_on_postgresql(spawn, tmp_path, postgres_url):
    env = process_env(tmp_path, SPRIG_DATABASE_URL=postgres_url, SPRIG_APP_SECRET_KEY=SECRET)
    server = serve(spawn, env)
    assert 'postgresql://' in server.stdout()
    assert not (tmp_path / 'sprig.db').exists()


def test_tasks_module_does_not_import_the_web_app(tmp_path):
    probe = 'import sys, tasks; print(sorted({"app", "bottle", "pages"} & set(sys.modules)))'
    done = subprocess.run(python('-c', probe), cwd=PROJECT_DIR, env=process_env(tmp_path),
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == '[]', done.stderr


@pytest.mark.parametrize('command', [python('app.py', 'serve', '--no-consumer'), huey_consumer()],
                         ids=['serve --no-consumer', 'huey_consumer'])
def test_memory_cache_is_refused_beside_a_separate_consumer(tmp_path, command):
    done = subprocess.run(command, cwd=PROJECT_DIR, env=process_env(tmp_path, SPRIG_CACHE_URL='memory://'),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert 'memory:// cannot be shared with a separate consumer' in done.stderr
    assert 'Traceback' not in done.stderr


def children(pid: int) -> set[int]:
    found = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True)
    return {int(line) for line in found.stdout.split()}


def alive(pid: int) -> bool:
    """Running: not gone, nor a zombie (an orphan's may wait long for a reaper)."""
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def wait_for(check, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    pytest.fail(f'not within {timeout} s: {check}')


def test_several_web_processes_share_the_port_and_are_kept_running(spawn, tmp_path):
    env = process_env(tmp_path)
    server = serve(spawn, env, 'serve', '--processes', '2')
    port = int(server.proc.args[-1])
    assert '(2 web processes)' in server.stdout()
    first = wait_for(lambda: len(children(server.pid)) == 2 and children(server.pid))
    pong = run_ping(env)
    assert pong.returncode == 0 and f'pid {server.pid} in' in pong.stdout  # the parent runs the consumer
    statuses = [get_json(f'http://127.0.0.1:{port}/api/v1/health')[0] for _ in range(20)]
    assert statuses == [200] * 20
    victim = min(first)
    os.kill(victim, signal.SIGKILL)  # a child that dies is replaced
    again = wait_for(lambda: len(children(server.pid)) == 2 and victim not in children(server.pid)
                     and children(server.pid))
    assert get_json(f'http://127.0.0.1:{port}/api/v1/health')[0] == 200
    started = time.monotonic()
    for pid in again:  # as systemd stops a service: every process of it at once
        os.kill(pid, signal.SIGTERM)
    assert server.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - started < 8
    assert not any(alive(pid) for pid in again)
    assert 'Traceback' not in server.stderr()


SLOW_SERVER = """
import sys, time, waitress
from sprig.serving import processes, server as serving
def slow(environ, start_response):
    time.sleep(1.5)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'done']
server = waitress.create_server(slow, sockets=[processes.listen('127.0.0.1', int(sys.argv[1]))], threads=2)
print('ready', flush=True)
sys.exit(serving.run_until_stopped(server.run, None))
"""


def test_a_second_stop_signal_does_not_cut_short_the_requests_in_flight(tmp_path):
    """systemd signals every process of a pool, and the parent signals its children again."""
    port = free_port()
    server = subprocess.Popen(python('-c', SLOW_SERVER, str(port)), cwd=PROJECT_DIR, env=process_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == 'ready'
    reply: dict = {}
    asking = threading.Thread(target=lambda: reply.update(body=urllib.request.urlopen(
        f'http://127.0.0.1:{port}/', timeout=10).read()))
    asking.start()
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    asking.join()
    _, errors = server.communicate(timeout=10)
    assert reply == {'body': b'done'} and server.returncode == 0, errors


def test_a_pool_starts_again_at_once_on_the_same_port(spawn, tmp_path):
    """Over the last run's connections, still in TIME_WAIT."""
    env = process_env(tmp_path)
    first = serve(spawn, env, 'serve', '--no-consumer', '--processes', '2')
    port = first.proc.args[-1]
    assert first.stop(signal.SIGTERM) == 0
    again = spawn(python('app.py', 'serve', '--no-consumer', '--processes', '2', '--port', port), env, 'again')
    status, _ = wait_http(f'http://127.0.0.1:{port}/api/v1/health', again)
    assert status == 200


def test_web_processes_stop_when_their_parent_is_killed(spawn, tmp_path):
    server = serve(spawn, process_env(tmp_path), 'serve', '--processes', '2', '--no-consumer')
    kids = wait_for(lambda: len(children(server.pid)) == 2 and children(server.pid))
    server.stop(signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in kids))


@pytest.mark.parametrize('serving', [('serve', '--no-consumer'), ('serve', '--no-consumer', '--processes', '2')],
                         ids=['one process', 'several'])
@pytest.mark.parametrize('starting', [(), ('--processes', '2')], ids=['one process', 'several'])
def test_port_in_use_is_one_clear_line(spawn, tmp_path, serving, starting):
    env = process_env(tmp_path)
    server = serve(spawn, env, *serving)
    port = server.proc.args[-1]
    done = subprocess.run(python('app.py', *starting, '--port', port), cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f'cannot listen on 127.0.0.1:{port}' in done.stderr and 'Traceback' not in done.stderr


def post_json(port: int, path: str, body: bytes, headers: dict | None = None) -> tuple[int, str, dict]:
    import http.client
    import json
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request('POST', path, body, {'Content-Type': 'application/json', **(headers or {})})
        reply = conn.getresponse()
        return reply.status, reply.getheader('Content-Type'), json.loads(reply.read())
    finally:
        conn.close()


def test_oversized_bodies_get_the_json_413_from_the_real_server(spawn, tmp_path):
    server = serve(spawn, process_env(tmp_path, SPRIG_APP_MAX_BODY_KB='1'), 'serve', '--no-consumer')
    port = int(server.proc.args[-1])
    for size in (1500, 3000, 100_000):
        status, kind, body = post_json(port, '/api/v1/user/login', b'{"x": "' + b'y' * size + b'"}')
        assert (status, kind, body['code']) == (413, 'application/json', 413), size


def test_an_unreachable_database_is_one_line_at_start(tmp_path):
    env = process_env(tmp_path, SPRIG_DATABASE_URL='postgresql://nobody@127.0.0.1:1/x',
                      SPRIG_APP_SECRET_KEY=SECRET)
    done = subprocess.run(python('app.py', '--port', str(free_port())), cwd=PROJECT_DIR, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and 'sprig: database unavailable' in done.stderr
    assert 'Traceback' not in done.stderr


def test_behind_a_trusted_proxy_limits_count_clients(spawn, tmp_path):
    env = process_env(tmp_path, SPRIG_APP_TRUSTED_PROXY='127.0.0.1', SPRIG_SMS_PER_ADDRESS_HOURLY='1')
    port = int(serve(spawn, env).proc.args[-1])

    def send(mobile: str, client: str) -> int:
        body = f'{{"mobile": "{mobile}", "scene": "register"}}'.encode()
        return post_json(port, '/api/v1/user/sms', body, {'X-Forwarded-For': client})[0]
    assert send('13900139001', '203.0.113.1') == 202
    assert send('13900139002', '203.0.113.2') == 202  # another client, same proxy
    assert send('13900139003', '203.0.113.1') == 429


def test_without_base_url_images_follow_the_port_served(spawn, tmp_path):
    port = free_port()
    server = spawn(python('app.py', '--port', str(port)), process_env(tmp_path), 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    _, banners = get_json(f'http://127.0.0.1:{port}/api/v1/home/banners')
    images = [banner['image'] for banner in banners['result']]
    assert images and all(image.startswith(f'http://127.0.0.1:{port}/static/') for image in images)
    with urllib.request.urlopen(images[0], timeout=5) as image:
        assert image.status == 200
    assert f'public   http://127.0.0.1:{port} (the address served; [app] base_url is empty)' in server.stdout()


def test_the_default_serves_with_a_web_process_per_core(spawn, tmp_path):
    """[app] processes = auto: `python app.py` as `make run` starts it uses every core, the
    consumer in the parent."""
    env = {k: v for k, v in process_env(tmp_path).items() if k != 'SPRIG_APP_PROCESSES'}
    cores = len(os.sched_getaffinity(0))
    server = serve(spawn, env)
    if cores == 1:
        assert 'web processes' not in server.stdout()
        return
    assert f'({cores} web processes)' in server.stdout()
    assert wait_for(lambda: len(children(server.pid)) == cores)
    pong = run_ping(env)
    assert pong.returncode == 0 and f'pid {server.pid} in' in pong.stdout
