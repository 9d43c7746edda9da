"""Fixtures: settings on a temporary data directory, the app under WebTest, real services and processes.

Services (Redis, PostgreSQL, MariaDB, Chromium) are used when reachable and skipped with the
reason otherwise; with CI=true a missing service fails the test instead.
"""
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# `make test`'s second pass sets SPRIG_TEST_DATABASE=postgresql: the in-process tests then run on
# the suite's own PostgreSQL database (emptied before each test) instead of a SQLite file each.
SERVER_DATABASE = os.environ.get('SPRIG_TEST_DATABASE', os.environ.get('SUITE_SERVER_DATABASE', ''))
os.environ['SUITE_SERVER_DATABASE'] = SERVER_DATABASE  # for pytest-xdist's workers, started after the next lines
# Before any project module is imported: the suite never reads the developer's SPRIG_* settings
# nor touches the project's data/ directory.
for name in [n for n in os.environ if n.startswith('SPRIG_')]:
    del os.environ[name]
os.environ['SPRIG_DATA_DIR'] = tempfile.mkdtemp(prefix='sprig-import-')
os.environ['SPRIG_QUEUE_IMMEDIATE'] = 'true'

import webtest  # noqa: E402

import app as sprig_app  # noqa: E402
import tasks  # noqa: E402
from models import TaskRecord, database  # noqa: E402
from sprig.db.schema import create_tables  # noqa: E402
from sprig.queue import records  # noqa: E402
from sprig.settings import PROJECT_DIR, Settings, load_settings  # noqa: E402

IN_CI = os.environ.get('CI', '').lower() == 'true'
REDIS_HOST, REDIS_PORT, REDIS_DB = '127.0.0.1', 6379, 11
POSTGRES_ADMIN = 'postgresql://postgres@127.0.0.1:5432/test'
# A database of the suite's own on each server, one per pytest-xdist worker (`make test` runs
# several): tests empty and rebuild their tables, which others must not see.
OWN_DATABASE = 'sprig_test' + (f"_{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get('PYTEST_XDIST_WORKER') else '')
POSTGRES_URL = f'postgresql://postgres@127.0.0.1:5432/{OWN_DATABASE}'
MYSQL_URL = f'mysql://root@127.0.0.1:3306/{OWN_DATABASE}'
CHROMIUM = '/usr/bin/chromium'
SECRET = 'test-secret-' + 'x' * 32
ARTIFACTS = PROJECT_DIR / 'tests' / 'artifacts'


def unavailable(reason: str) -> None:
    """Skip: the service is not here. Under CI=true that is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f'{reason} (CI=true requires it)')
    pytest.skip(reason)


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as a process with SPRIG_DATA_DIR=data_dir and these SPRIG_* variables would read."""
    return load_settings({'SPRIG_DATA_DIR': str(data_dir), **server_database(), **env})


def pytest_report_header(config) -> str:
    return f"database: {SERVER_DATABASE or 'a SQLite file per test'}"


def pytest_collection_modifyitems(config, items: list) -> None:
    """The PostgreSQL pass runs the modules marked `database`, bar the tests about SQLite itself."""
    if not SERVER_DATABASE:
        return
    kept = [item for item in items
            if item.get_closest_marker('database') and not item.get_closest_marker('sqlite_only')]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


def server_database() -> dict[str, str]:
    """The settings that put a process, or this one, on the pass's database server."""
    if not SERVER_DATABASE:
        return {}
    assert SERVER_DATABASE == 'postgresql', f'SPRIG_TEST_DATABASE={SERVER_DATABASE}: only postgresql is known'
    return {'SPRIG_DATABASE_URL': POSTGRES_URL, 'SPRIG_APP_SECRET_KEY': SECRET}


@pytest.fixture(autouse=True)
def empty_server_database(request) -> None:
    """On the shared server database, each test starts with no rows, unless its module keeps
    rows for all its tests (marked `module_rows`: its module fixture calls empty_tables)."""
    if not request.node.get_closest_marker('module_rows'):
        empty_tables()


def empty_tables() -> None:
    """Every row of the pass's server database goes; the schema version stays. No-op on SQLite."""
    if not SERVER_DATABASE:
        return
    import psycopg2
    with contextlib.closing(psycopg2.connect(own_postgres())) as conn, conn, conn.cursor() as cur:
        cur.execute("SET lock_timeout = '10s'")  # a connection left in a transaction: fail, not hang
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schemaversion'")
        names = ', '.join(f'"{name}"' for (name,) in cur.fetchall())
        if names:
            cur.execute(f'TRUNCATE {names} RESTART IDENTITY CASCADE')


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true')


@pytest.fixture
def app(settings: Settings):
    application = sprig_app.create_app(settings)
    create_tables()
    return application


@pytest.fixture
def client(app) -> webtest.TestApp:
    return webtest.TestApp(app)


class StatementLog(logging.Handler):
    """Peewee logs every statement it runs, at DEBUG, as (sql, params)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != 'peewee':  # not peewee.pool's news
            return
        with self.guard:
            self.statements.append(record.msg[0] if isinstance(record.msg, tuple) else str(record.msg))


@contextlib.contextmanager
def counting_queries():
    """The SQL statements Peewee runs in the block, from any thread of this process."""
    handler, peewee_log = StatementLog(), logging.getLogger('peewee')
    level = peewee_log.level
    peewee_log.addHandler(handler)
    peewee_log.setLevel(logging.DEBUG)
    try:
        yield handler.statements
    finally:
        peewee_log.removeHandler(handler)
        peewee_log.setLevel(level)


@contextlib.contextmanager
def waitress_thread(app, threads: int):
    """A real Waitress server for `app` on a free port, its loop in a thread, closed at the end.
    Closing it under the loop's select() makes that select fail (EBADF): expected then, not a
    failure of the test that happens to run next."""
    import waitress
    server = waitress.create_server(app, host='127.0.0.1', port=0, threads=threads)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            if not closing.is_set():
                raise

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    try:
        yield server
    finally:
        closing.set()
        server.close()
        loop.join(5)


def together(jobs: list) -> list:
    """Run each job in a thread of its own, all released at once; their results, in order."""
    results = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = jobs[index]()
    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def bearer(client: webtest.TestApp, name: str, password: str) -> dict:
    """Sign in through the API; the Authorization header that says who the next calls are from."""
    token = client.post_json('/api/v1/user/login', {'username': name, 'password': password}).json['token']
    client.reset()  # drop the cookie: each call says who it is
    return {'Authorization': f'Bearer {token}'}


@pytest.fixture
def redis_url() -> str:
    """A Redis database of the suite's (11); each test cleans up the keys it names."""
    if not reachable(REDIS_HOST, REDIS_PORT):
        unavailable(f'Redis not reachable on {REDIS_HOST}:{REDIS_PORT}')
    return f'redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}'


@pytest.fixture
def unique() -> str:
    """A name no other test uses: queue names and key prefixes in shared services."""
    return f'test{secrets.token_hex(4)}'


@pytest.fixture
def redis_prefix(redis_url: str, unique: str):
    """A key prefix in the suite's Redis database; every key under it is deleted afterwards."""
    import redis
    yield f'{unique}:'
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f'*{unique}*'))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def postgres_url() -> str:
    return own_postgres()


def own_postgres() -> str:
    """The suite's own PostgreSQL database, created on first use."""
    if not reachable('127.0.0.1', 5432):
        unavailable('PostgreSQL not reachable on 127.0.0.1:5432')
    import psycopg2
    conn = psycopg2.connect(POSTGRES_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('SELECT 1 FROM pg_database WHERE datname = %s', (OWN_DATABASE,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE {OWN_DATABASE}')
    conn.close()
    return POSTGRES_URL


@pytest.fixture
def mysql_url() -> str:
    """The suite's own MariaDB database, created on first use."""
    if not reachable('127.0.0.1', 3306):
        unavailable('MariaDB not reachable on 127.0.0.1:3306')
    import pymysql
    conn = pymysql.connect(host='127.0.0.1', user='root', password='')
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE IF NOT EXISTS {OWN_DATABASE} CHARACTER SET utf8mb4')
    conn.close()
    return MYSQL_URL


def open_sale(data_dir: Path, users: int, stock: int, **env: str) -> tuple[list[str], int]:
    """Buyers with login tokens (minted directly: a scrypt sign-in costs 70 ms) and a sale open
    for an hour, in the database the given settings name. Returns the tokens and the sale's id."""
    import datetime
    from decimal import Decimal

    from models import Course, SeckillItem, Token, User, utcnow
    from sprig.shop.accounts import keyed
    tasks.configure(make_settings(data_dir, SPRIG_APP_SECRET_KEY=SECRET, **env))
    create_tables()
    tokens = [secrets.token_urlsafe(32) for _ in range(users)]
    now = utcnow()
    with database.atomic():
        User.insert_many([{'username': f'buyer{n:04d}', 'password_hash': '-'} for n in range(users)]).execute()
        ids = [user.id for user in User.select(User.id).order_by(User.id)]
        Token.insert_many([{'digest': keyed(SECRET, token), 'user': user, 'expires': now + datetime.timedelta(hours=1)}
                           for token, user in zip(tokens, ids, strict=True)]).execute()
        course = Course.create(name='Sale course', kind='actual')
        item = SeckillItem.create(course=course, price=Decimal('9.90'), stock_total=stock, stock_left=stock,
                                  starts_at=now - datetime.timedelta(minutes=1),
                                  ends_at=now + datetime.timedelta(hours=1))
    database.close()
    return tokens, item.id


# Real processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def process_env(data_dir: Path, **env: str) -> dict[str, str]:
    """The environment of a Sprig process: this one's, minus SPRIG_*, plus the given settings. One
    web process unless a test asks for more: pids and timings are then those of one process
    (test_run_modes.py starts the default, one per core, and pools of its own)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith('SPRIG_')}
    return {**base, 'SPRIG_DATA_DIR': str(data_dir), 'PYTHONUNBUFFERED': '1', 'SPRIG_APP_PROCESSES': '1',
            **server_database(), **env}


class Proc:
    """A child process whose output goes to files, stopped by its pid."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path, name: str):
        self.out_path, self.err_path = logs / f'{name}.out', logs / f'{name}.err'
        with self.out_path.open('w') as out, self.err_path.open('w') as err:
            self.proc = subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        """Send sig to the pid; SIGKILL if it has not exited within timeout. Returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def spawn(tmp_path: Path):
    """Start processes (`spawn(args, env, name)`); whatever is still running is stopped at the end."""
    started: list[Proc] = []

    def start(args: list[str], env: dict[str, str], name: str) -> Proc:
        proc = Proc(args, env, tmp_path, name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(signal.SIGKILL if proc.proc.poll() is None else signal.SIGINT)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def huey_consumer(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / 'huey_consumer'), 'tasks.huey', *args]


def get_json(url: str, timeout: float = 5) -> tuple[int, dict]:
    import json
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_http(url: str, proc: Proc, timeout: float = 20) -> tuple[int, dict]:
    """Poll url until the server answers; fail with the process's output if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f'process exited with {proc.proc.returncode}:\n{proc.stderr()}')
        try:
            return get_json(url, timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    pytest.fail(f'no answer from {url} within {timeout} s:\n{proc.stderr()}')


# Browser ----------------------------------------------------------------------------------------

# Debian's Chromium, as root, on a machine without outside network: no sandbox, no background calls.
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='session')
def browser():
    """Headless Chromium from Debian's package, driven by Playwright (never `playwright install`)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f'{CHROMIUM} missing (apt-get install chromium)')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={'width': 1100, 'height': 700})
    yield context
    context.close()


def start_site(spawn, data_dir: Path, **env: str) -> str:
    """`python app.py` (embedded consumer) on a free port; its base URL once it answers."""
    port = free_port()
    env.setdefault('SPRIG_APP_BASE_URL', f'http://127.0.0.1:{port}')  # banner images are absolute URLs
    server = spawn(python('app.py', '--port', str(port)), process_env(data_dir, **env), 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    return f'http://127.0.0.1:{port}'


def wait_js(page, expression: str, timeout: float = 10) -> None:
    """Wait until a JavaScript expression is true in the page. Not page.wait_for_function: it
    evals in the page, which the pages' Content-Security-Policy (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f'still false after {timeout} s: {expression}')
        time.sleep(0.05)


def shot(page, name: str) -> None:
    """A full-page screenshot in tests/artifacts/ (git-ignored), to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f'{name}.png'), full_page=True)


def wait_until(check, timeout: float, failure: str, log=str):
    """Poll check() until it returns something true, and return that; else fail, showing log()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f'{failure} within {timeout} s:\n{log()}')


# Real consumers of the test tasks (tests/testtasks.py) -------------------------------------------

@dataclass
class Engine:
    env: dict[str, str]
    dir: Path
    spawn: object

    def consumer(self, name: str, module: str = 'testtasks'):
        """`huey_consumer <module>.huey`: the queue's Huey, with the test tasks that module registers."""
        args = huey_consumer('-w', '2', '-k', 'thread', '-m', '1')
        args[1] = f'{module}.huey'
        return self.spawn(args, process_env(self.dir, **self.env), name)

    def traces(self, name: str) -> list[tuple[int, float]]:
        path = self.dir / name
        if not path.exists():
            return []
        return [(int(pid), float(at)) for pid, at in (line.split() for line in path.read_text().splitlines())]


def engine_env(kind: str, request, unique: str) -> dict[str, str]:
    env = {'SPRIG_QUEUE_HEARTBEAT_TIMEOUT': '3', 'SPRIG_QUEUE_SHUTDOWN_TIMEOUT': '2'}
    if kind == 'redis':
        url = request.getfixturevalue('redis_url')
        request.getfixturevalue('redis_prefix')  # deletes the queue's keys afterwards
        env |= {'SPRIG_QUEUE_URL': url, 'SPRIG_QUEUE_NAME': unique}
    return env


def record(task_id: str) -> TaskRecord | None:
    """The task's record as the API reads it: its row, or the stub of a task just enqueued."""
    with database.connection_context():
        return records.find(tasks.huey, task_id)


def wait_state(task_id: str, *states: str, timeout: float = 30) -> tuple[TaskRecord, list[str]]:
    """Poll the record until its state is one of `states`; also return every state seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = record(task_id)
        if current and (not seen or seen[-1] != current.state):
            seen.append(current.state)
        if current and current.state in states:
            return current, seen
        time.sleep(0.05)
    pytest.fail(f'task {task_id} never reached {states}; states seen: {seen}')
