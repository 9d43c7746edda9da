"""A flash sale ("seckill") under a storm of presses, in the two ways the app runs: how fast
presses are answered, how soon every accepted press has its outcome, and whether the sale stayed sound.

    .venv/bin/python bench/seckill.py [--users U] [--stock S] [--clients C] [--quick]

Prints one JSON line; about 20 s on a 2-core machine, 10 s with --quick (100 users, 50 units).
Each mode gets a fresh data directory, a free port and processes started here (this process, the
orchestrator, never imports the app): embedded is `python app.py --port P` (Waitress and the
embedded consumer, SPRIG_QUEUE_WORKERS=4, SQLite for the database, queue and cache), run at C
clients and again at Django's 32 (its verdicts come from that run); redis is `python app.py serve
--no-consumer --processes 2 --threads 8` (two web processes, one per core) beside two
`huey_consumer tasks.huey -w 4 -k thread -q`, queue and cache on Redis 127.0.0.1:6379/14 named
bench<random> (only keys containing it are deleted afterwards; Redis unreachable: {"skipped":
...}), the database a SQLite file.
First a helper (this file with --prepare, in the mode's environment) creates the tables, U users
with a login token each (written directly: an API login costs 70 ms of scrypt) and one sale of
S units, open for an hour. The clock starts once /api/v1/health answers 200 and every consumer
has written its heartbeat.

- Every user presses 4 times (POST /api/v1/seckill), shuffled so that a user's presses may race,
  from C threads (default 64), each over its own keep-alive connection. submits_per_s = presses
  / time from the first press to the last answer; p50 and p99 are nearest-rank.
- 8 threads poll each 202 (GET /api/v1/seckill/result) during and after the storm, at most every
  0.1 s, until it is 100 (won), 101 (lost) or 104 (error). results_known_s = time from the first
  press until the last outcome was seen (up to a poll interval late); what is still unknown 60 s
  after the last press is counted under `unresolved` by its last code.
- Then the processes stop and the database is read. oversold = orders beyond S;
  duplicate_live_orders = users with more than one live order; server_errors = 5xx answers to
  presses and polls; `refusals` counts answers >= 300 by status and message.
The client threads share the two cores with the servers (here about 8% of the CPU a run used).
"""
import argparse
import http.client
import json
import math
import os
import queue
import random
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import redis

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))  # `tasks` is the app's, not bench/tasks.py

REDIS_URL = 'redis://127.0.0.1:6379/14'
DJANGO = {'submits_per_s': 420, 'p50_ms': 69, 'p99_ms': 250, 'results_within_s': 11}  # the embedded mode's bar
TARGETS = {'redis_submits_per_s': 1300, 'redis_p99_ms': 50, 'redis_results_within_s': 4,
           'embedded': f"at least Django's {DJANGO['submits_per_s']} submits/s, p50 {DJANGO['p50_ms']} ms, "
                       f"p99 {DJANGO['p99_ms']} ms, {DJANGO['results_within_s']} s"}
MEASURED_BY = {'submits_per_s': 'submits_per_s', 'p50_ms': 'submit_p50_ms', 'p99_ms': 'submit_p99_ms',
               'results_within_s': 'results_known_s'}  # a target's figure
DJANGO_CLIENTS = 32  # the client threads Django's figures were measured with
WEB_PROCESSES = 2  # the redis mode's, one per core
PRESSES = 4  # per user
POLLERS, POLL_INTERVAL = 8, 0.1
TERMINAL = {100, 101, 104}
RESULTS_TIMEOUT = 60  # seconds after the last press's answer
STOP_TIMEOUT = 15  # seconds a child gets after SIGINT before SIGKILL


# Helper process: the sale and its buyers ----------------------------------------------------------

def prepare(users: int, stock: int) -> dict:
    """Tables, users with tokens, a course and its sale, in this process's environment."""
    import datetime

    import tasks  # binds the database to the environment's settings
    from models import Course, SeckillItem, Token, User, database, utcnow
    from sprig.db.schema import create_tables
    from sprig.shop.accounts import keyed

    create_tables()
    now, tokens = utcnow(), [secrets.token_urlsafe(24) for _ in range(users)]
    with database.atomic():
        User.insert_many([{'username': f'bench{n:05d}', 'password_hash': 'x'} for n in range(users)]).execute()
        ids = [user.id for user in User.select(User.id).order_by(User.id)]
        Token.insert_many([{'digest': keyed(tasks.settings.app.secret_key, token), 'user': user_id,
                            'expires': now + datetime.timedelta(days=1)}
                           for user_id, token in zip(ids, tokens, strict=True)]).execute()
        course = Course.create(name='Bench course', kind='actual')
        item = SeckillItem.create(course=course, price='9.90', stock_total=stock, stock_left=stock,
                                  starts_at=now - datetime.timedelta(minutes=1),
                                  ends_at=now + datetime.timedelta(hours=1))
    return {'item_id': item.id, 'tokens': tokens}


# The storm -----------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection; a request that gets no answer drops it, the next reconnects."""

    def __init__(self, port: int):
        self.port, self.conn = port, None

    def request(self, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, dict]:
        """The answer's status and JSON body; (0, {}) when no answer came."""
        self.conn = self.conn or http.client.HTTPConnection('127.0.0.1', self.port, timeout=60)
        headers = {'Authorization': f'Bearer {token}', 'Content-Type': 'application/json'}
        try:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            status, text = response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return 0, {}
        try:
            return status, json.loads(text)
        except ValueError:  # not from the app: Waitress's own error pages are text
            return status, {'msg': text[:80].decode(errors='replace')}


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


class Storm:
    """Every user's presses from `clients` threads, and the polls of their outcomes."""

    def __init__(self, port: int, item_id: int, tokens: list[str], clients: int):
        self.port, self.clients = port, clients
        self.body = json.dumps({'item_id': item_id}).encode()
        self.presses = tokens * PRESSES
        random.Random(1).shuffle(self.presses)
        self.pending: queue.Queue[tuple[float, str, str]] = queue.Queue()  # (due, task id, token)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()  # of the presses: 200, 202, 4xx, 5xx, no_answer
        self.answers: Counter[int] = Counter()  # outcome codes, of 200 presses and of polls
        self.refusals: Counter[str] = Counter()  # presses and polls answered >= 300: status and message
        self.unknown: dict[str, int | None] = {}  # accepted task -> the last code (or status) polled
        self.polls = 0
        self.submitting = True
        self.started = self.last_answer = self.last_known = 0.0  # perf_counter() times, set by run()

    def press(self, tokens: list[str]) -> None:
        client = Client(self.port)
        for token in tokens:
            sent = time.perf_counter()
            status, body = client.request('POST', '/api/v1/seckill', token, self.body)
            answered = time.perf_counter()
            with self.lock:
                self.latencies.append(answered - sent)
                self.last_answer = max(self.last_answer, answered)
                self.statuses[str(status) if status in (200, 202) else f'{status // 100}xx' if status
                              else 'no_answer'] += 1
                if status >= 300:
                    self.refusals[f'{status} {body.get("msg", "")}'] += 1
                elif status == 202:
                    self.unknown[body['task_id']] = None
                    self.pending.put((answered + POLL_INTERVAL, body['task_id'], token))
                elif status == 200:
                    self.answers[body.get('code')] += 1

    def poll(self) -> None:
        client = Client(self.port)
        while self.submitting or self.unknown and time.perf_counter() - self.last_answer < RESULTS_TIMEOUT:
            try:
                due, task_id, token = self.pending.get(timeout=0.05)
            except queue.Empty:
                continue
            time.sleep(max(0.0, due - time.perf_counter()))
            status, body = client.request('GET', f'/api/v1/seckill/result?task_id={task_id}', token)
            code = body.get('code') if status == 200 else None
            with self.lock:
                self.polls += 1
                if status >= 300:
                    self.refusals[f'{status} {body.get("msg", "")}'] += 1
                if code in TERMINAL:
                    self.answers[code] += 1
                    self.last_known = time.perf_counter()
                    del self.unknown[task_id]
                else:
                    self.unknown[task_id] = code or status
                    self.pending.put((time.perf_counter() + POLL_INTERVAL, task_id, token))

    def run(self) -> dict:
        self.started = self.last_answer = self.last_known = time.perf_counter()
        pressers = [threading.Thread(target=self.press, args=(self.presses[n::self.clients],))
                    for n in range(self.clients)]
        pollers = [threading.Thread(target=self.poll) for _ in range(POLLERS)]
        for thread in pressers + pollers:
            thread.start()
        for thread in pressers:
            thread.join()
        self.submitting = False
        for thread in pollers:
            thread.join()
        figures = {
            'submits': len(self.latencies),
            'submits_per_s': round(len(self.latencies) / (self.last_answer - self.started)),
            'submit_p50_ms': round(nearest_rank(self.latencies, 50) * 1000, 1),
            'submit_p99_ms': round(nearest_rank(self.latencies, 99) * 1000, 1),
            'results_known_s': None if self.unknown else round(self.last_known - self.started, 2),
            'polls': self.polls,
            'submit_statuses': dict(self.statuses),
            'answers': {str(code): count for code, count in sorted(self.answers.items(), key=str)},
            'server_errors': sum(count for key, count in self.refusals.items() if key.startswith('5')),
            'refusals': dict(self.refusals),
        }
        if self.unknown:
            figures['unresolved'] = dict(Counter(str(code) for code in self.unknown.values()))
        return figures


# Orchestrator --------------------------------------------------------------------------------------

def start(args: list[str], env: dict[str, str], data: Path, name: str) -> subprocess.Popen:
    """A process of a mode, its output in <data>/<name>.log."""
    with (data / f'{name}.log').open('w') as log:
        return subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT, then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def child_env(data: Path, port: int, mode: str, name: str) -> dict[str, str]:
    """This environment minus any SPRIG_* setting but SPRIG_APP_PROCESSES (to compare the
    embedded mode's web processes: SPRIG_APP_PROCESSES=1 bench/seckill.py), plus the mode's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('SPRIG_') or k == 'SPRIG_APP_PROCESSES'}
    env |= {'SPRIG_DATA_DIR': str(data), 'SPRIG_APP_SECRET_KEY': secrets.token_urlsafe(32),
            'SPRIG_APP_BASE_URL': f'http://127.0.0.1:{port}', 'SPRIG_AUTH_LOGINS_PER_MINUTE': '0',
            'SPRIG_SECKILL_PAYMENT_TIMEOUT': '3600', 'PYTHONPATH': str(PROJECT_DIR), 'PYTHONUNBUFFERED': '1'}
    if mode == 'embedded':
        env['SPRIG_QUEUE_WORKERS'] = '4'
    else:
        env |= {'SPRIG_QUEUE_URL': REDIS_URL, 'SPRIG_CACHE_URL': REDIS_URL, 'SPRIG_QUEUE_NAME': name,
                'SPRIG_CACHE_PREFIX': f'{name}:'}
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def query(database: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


def wait_ready(port: int, data: Path, consumers: int, children: list[subprocess.Popen]) -> str | None:
    """None once the site is healthy and every consumer has beaten, else what went wrong."""
    deadline = time.monotonic() + 60
    client = Client(port)
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return f'a process exited: {tails(data)}'
        status, _ = client.request('GET', '/api/v1/health', '')
        if status == 200 and query(data / 'sprig.db', 'SELECT count(*) FROM consumerbeat')[0][0] >= consumers:
            return None
        time.sleep(0.1)
    return f'not ready within 60 s: {tails(data)}'


def tails(data: Path) -> str:
    """The last lines of every process's log, to say what went wrong."""
    return ' || '.join(f'{log.stem}: ' + ' | '.join(log.read_text(errors='replace').splitlines()[-3:])
                       for log in sorted(data.glob('*.log')))


def soundness(database: Path, stock: int) -> dict:
    orders = query(database, 'SELECT count(*) FROM "order"')[0][0]
    doubles = query(database, 'SELECT user_id FROM "order" WHERE live = 1 GROUP BY user_id HAVING count(*) > 1')
    stock_left = query(database, 'SELECT stock_left FROM seckillitem')[0][0]
    return {'orders': orders, 'stock_left': stock_left, 'oversold': max(0, orders - stock),
            'duplicate_live_orders': len(doubles), 'negative_stock': stock_left < 0}


def measure(work: Path, mode: str, users: int, stock: int, clients: int) -> dict:
    data, name, port = work / f'{mode}-{clients}', f'bench{secrets.token_hex(4)}', free_port()
    data.mkdir()
    env = child_env(data, port, mode, name)
    bin_dir = Path(sys.executable).parent
    children: list[subprocess.Popen] = []
    try:
        helper = subprocess.run([sys.executable, __file__, '--prepare', '--users', str(users), '--stock', str(stock)],
                                cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300)
        if helper.returncode != 0:
            return {'error': f'prepare exited {helper.returncode}: {helper.stderr[-500:]}'}
        sale = json.loads(helper.stdout)
        if mode == 'embedded':
            children.append(start([sys.executable, 'app.py', '--port', str(port)], env, data, 'server'))
        else:
            children.append(start([sys.executable, 'app.py', 'serve', '--no-consumer', '--processes',
                                   str(WEB_PROCESSES), '--threads', '8', '--port', str(port)], env, data, 'server'))
            children += [start([str(bin_dir / 'huey_consumer'), 'tasks.huey', '-w', '4', '-k', 'thread', '-q'],
                               env, data, f'consumer{n}') for n in (1, 2)]
        problem = wait_ready(port, data, max(1, len(children) - 1), children)
        if problem:
            return {'error': problem}
        figures = Storm(port, sale['item_id'], sale['tokens'], clients).run()
    finally:
        for child in reversed(children):
            stop(child)
        if mode == 'redis':
            forget(name)
    return figures | soundness(data / 'sprig.db', stock)


def forget(name: str) -> None:
    """Delete the Redis keys that contain the mode's queue name or cache prefix (never anything else)."""
    with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
        keys = list(client.scan_iter(f'*{name}*'))
        if keys:
            client.delete(*keys)


def redis_missing() -> str | None:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2) as client:
            client.ping()
    except (redis.RedisError, OSError) as exc:
        return f'Redis not reachable at {REDIS_URL}: {exc}'
    return None


def verdicts(results: dict) -> dict:
    """Each target: true, false, or null when not measured. A mode is sound when nothing was
    oversold or doubled, the stock stayed >= 0 and no answer was a 5xx. The embedded mode is held
    to Django's figures at Django's 32 client threads."""
    bars = {'redis': {key.removeprefix('redis_'): bound for key, bound in TARGETS.items() if key.startswith('redis_')},
            'embedded': DJANGO}
    met: dict[str, bool | None] = {}
    runs = {'redis': results['redis'], 'embedded': results.get('embedded_at_django_clients', results['embedded'])}
    for mode, bar in bars.items():
        figures = runs[mode]
        for target, bound in bar.items():
            value = figures.get(MEASURED_BY[target])  # results_known_s is None when some stayed unknown
            met[f'{mode}_{target}'] = None if 'submits' not in figures else value is not None and (
                value >= bound if target == 'submits_per_s' else value <= bound)
        met[f'{mode}_sound'] = None if 'orders' not in figures else (
            figures['oversold'] == 0 and figures['duplicate_live_orders'] == 0
            and not figures['negative_stock'] and figures['server_errors'] == 0)
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--users', type=int, default=500, help='buyers, each pressing 4 times (default 500)')
    parser.add_argument('--stock', type=int, default=500, help='units on sale (default 500)')
    parser.add_argument('--clients', type=int, default=64, help='client threads pressing (default 64)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 100 users, 50 units')
    parser.add_argument('--prepare', action='store_true', help=argparse.SUPPRESS)  # the helper process
    args = parser.parse_args()
    users, stock = (100, 50) if args.quick else (args.users, args.stock)
    if args.prepare:
        print(json.dumps(prepare(users, stock)))
        return

    started = time.monotonic()
    results: dict = {'users': users, 'stock': stock, 'presses': users * PRESSES, 'clients': args.clients,
                     'targets': TARGETS}
    with tempfile.TemporaryDirectory(prefix='sprig-bench-seckill-', ignore_cleanup_errors=True) as tmp:
        results['embedded'] = measure(Path(tmp), 'embedded', users, stock, args.clients)
        if args.clients != DJANGO_CLIENTS:  # like for like with Django's figures
            results['embedded_at_django_clients'] = measure(Path(tmp), 'embedded', users, stock, DJANGO_CLIENTS)
        missing = redis_missing()
        results['redis'] = {'skipped': missing} if missing else measure(Path(tmp), 'redis', users, stock,
                                                                         args.clients)
    results['met'] = verdicts(results)
    results['seconds'] = round(time.monotonic() - started, 1)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
