"""The flash-sale storm, with real servers: 2,000 presses from 500 signed-in users (4 each, from 32
client threads) for 100 seats, once with `python app.py` (SQLite everywhere) and once with
Waitress + Redis + two huey_consumer processes (one of them killed with SIGKILL mid-storm)."""
import http.client
import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
from conftest import SECRET, free_port, huey_consumer, make_settings, open_sale, process_env, python, wait_http

import tasks
from models import Order, SeckillItem, database
from sprig.settings import PROJECT_DIR

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

USERS, PRESSES, CLIENTS, STOCK = 500, 4, 32, 100
TERMINAL = (100, 101, 104)
DEADLINE = 60  # seconds from the first press within which every accepted press has its answer


@dataclass
class Storm:
    port: int
    tokens: list[str]
    item_id: int
    statuses: list[int] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)  # task id -> the user who pressed
    answers: dict[str, int] = field(default_factory=dict)  # task id -> terminal code
    guard: threading.Lock = field(default_factory=threading.Lock)

    def call(self, conn: http.client.HTTPConnection, method: str, path: str, user: int,
             body: dict | None = None) -> tuple[int, dict]:
        headers = {'Authorization': f'Bearer {self.tokens[user]}', 'Content-Type': 'application/json'}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())

    def press_all(self) -> None:
        """Every user presses PRESSES times, in random order, from CLIENTS threads."""
        work = [user for user in range(USERS) for _ in range(PRESSES)]
        random.shuffle(work)
        self.run_threads(CLIENTS, lambda conn, next_job: self.press(conn, work, next_job))

    def press(self, conn, work: list[int], index: int) -> None:
        status, body = self.call(conn, 'POST', '/api/v1/seckill', work[index], {'item_id': self.item_id})
        with self.guard:
            self.statuses.append(status)
            if status == 202:
                self.accepted[body['task_id']] = work[index]

    def run_threads(self, count: int, job, jobs: int | None = None) -> None:
        jobs = USERS * PRESSES if jobs is None else jobs
        counter = iter(range(jobs))
        lock = threading.Lock()

        def worker():
            conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                job(conn, index)
            conn.close()
        threads = [threading.Thread(target=worker) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def poll_until_known(self, deadline: float) -> None:
        """Poll every accepted press's result until all are terminal or the deadline passes."""
        while time.monotonic() < deadline:
            pending = [task_id for task_id in self.accepted if task_id not in self.answers]
            if not pending:
                return
            self.run_threads(8, lambda conn, i, pending=pending: self.poll(conn, pending[i]), jobs=len(pending))
            time.sleep(0.2)

    def poll(self, conn, task_id: str) -> None:
        status, body = self.call(conn, 'GET', f'/api/v1/seckill/result?task_id={task_id}', self.accepted[task_id])
        with self.guard:
            self.statuses.append(status)
            if body.get('code') in TERMINAL:
                self.answers[task_id] = body['code']


def check(storm: Storm, started: float) -> None:
    """The invariants of API.md, from the answers and the database."""
    assert all(status < 500 for status in storm.statuses), sorted(set(storm.statuses))
    assert len(storm.statuses) >= USERS * PRESSES
    missing = [task_id for task_id in storm.accepted if task_id not in storm.answers]
    assert not missing, f'{len(missing)} of {len(storm.accepted)} presses without an answer after {DEADLINE} s'
    with database.connection_context():
        orders = list(Order.select())
        assert len(orders) == STOCK
        assert len({order.user_id for order in orders if order.live}) == len([o for o in orders if o.live])
        assert SeckillItem.select().first().stock_left == 0
    won = {task_id for task_id, code in storm.answers.items() if code == 100}
    assert won == {order.task_id for order in orders}  # an order exactly for each "you got it"
    assert time.monotonic() - started < DEADLINE


def run_storm(port: int, tokens: list[str], item_id: int, during=None) -> None:
    storm = Storm(port, tokens, item_id)
    started = time.monotonic()
    presses = threading.Thread(target=storm.press_all)
    presses.start()
    if during:
        during(storm)
    presses.join()
    storm.poll_until_known(started + DEADLINE)
    check(storm, started)


@pytest.fixture
def reset_tasks(tmp_path):
    yield
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_storm_with_python_app_py(tmp_path, spawn, reset_tasks):
    tokens, item_id = open_sale(tmp_path, USERS, STOCK)
    port = free_port()
    env = process_env(tmp_path, SPRIG_APP_SECRET_KEY=SECRET, SPRIG_QUEUE_WORKERS='4')
    server = spawn(python('app.py', '--port', str(port), '--threads', '32'), env, 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    run_storm(port, tokens, item_id)


def test_storm_with_waitress_redis_and_two_consumers_one_killed(tmp_path, spawn, reset_tasks, redis_url,
                                                                redis_prefix, unique):
    settings = {'SPRIG_QUEUE_URL': redis_url, 'SPRIG_QUEUE_NAME': unique, 'SPRIG_CACHE_URL': redis_url,
                'SPRIG_CACHE_PREFIX': redis_prefix, 'SPRIG_QUEUE_HEARTBEAT_TIMEOUT': '3'}
    tokens, item_id = open_sale(tmp_path, USERS, STOCK, **settings)
    env = process_env(tmp_path, SPRIG_APP_SECRET_KEY=SECRET, PYTHONPATH=str(PROJECT_DIR), **settings)
    consumers = [spawn(huey_consumer('-w', '4', '-k', 'thread'), env, f'consumer{n}') for n in (1, 2)]
    port = free_port()
    waitress = str(PROJECT_DIR / '.venv' / 'bin' / 'waitress-serve')
    server = spawn([waitress, f'--port={port}', '--threads=32', '--call', 'app:make_app'], env, 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)

    def kill_one(storm: Storm) -> None:
        while len(storm.accepted) < 20:  # orders are being made
            time.sleep(0.001)
        consumers[0].proc.send_signal(signal.SIGKILL)
    run_storm(port, tokens, item_id, during=kill_one)
    assert consumers[0].proc.wait(5) == -signal.SIGKILL and consumers[1].proc.poll() is None
