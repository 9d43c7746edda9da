"""The task engine, measured: enqueue and end-to-end rates of no-op tasks drained by
`huey_consumer -w 4 -k thread`, on the SQLite and Redis queues with task records on and off and
on a bare RedisHuey for reference, and how late tasks scheduled 2 s ahead start.

    .venv/bin/python bench/tasks.py [--tasks N] [--quick]

Prints one JSON line: about 100 s for the default 3 rounds of 10,000 tasks on a 2-core
machine, 18 s with --quick (1,000 tasks, one round).

Each scenario (queue backend x records on/off) gets a fresh data directory (the SQLite files of
the database, the queue and the cache), a queue named bench<random>, and two processes started
here with that environment: `huey_consumer bench.tasks.huey -w 4 -k thread -q` (`-m 1` on SQLite)
and a producer. Both import this file as the module bench.tasks, which registers the benchmark's
tasks on the app's huey (tasks.py reads the scenario's settings from the environment); this
process, the orchestrator, never imports the app. Redis is 127.0.0.1:6379 database 13: only the
keys naming the scenario's queue are deleted afterwards; when unreachable, {"skipped": ...}.

- The producer first waits for the consumer to run a few warm-up tasks (so it is running, its
  workers awake), then enqueues N no-op tasks from one thread. enqueue_per_s = N / time of the
  enqueue loop; end_to_end_per_s = N / time from the first enqueue until the N-th task has run.
- "Has run" is counted exactly, without reading records or results (which would load what is
  measured): each no-op appends one byte to a file (O_APPEND, one write(2) of a few microseconds)
  and the producer, once done enqueueing, polls the file's size every 2 ms.
- Each queue runs `--repeat` rounds (default 3) of records on then off; each figure is the median
  of its rounds (end_to_end_runs lists them all): on a shared 2-core machine one run of the same
  code varies by up to 25%.
- records_cost = 1 - end_to_end(records on) / end_to_end(records off), per backend, from the medians.
- Records, after the clock: each process's RecordWriter commits its changes every 20 ms, so when
  the last mark lands the producer may still hold unflushed inserts and the consumer unflushed
  starts and finishes. records_written_first_look is the count of no-op records at that moment;
  then the producer polls until all N + warm-up records exist and are terminal, or the count and
  the non-terminal count have held still for RECORDS_SETTLE s, or RECORDS_TIMEOUT s have passed:
  records_written, records_not_terminal and records_wait_s are taken then.
- Lateness (records on, after the rates): 40 tasks scheduled with delay=2, one every 0.05 s; each
  returns time.time() at its start, read back with .get(blocking=True); lateness = start - eta,
  the eta Huey computed at enqueue (enqueue time + 2 s). p50 and p99 are nearest-rank.
- Bare Huey, the reference (Redis only): each round, after Sprig's two Redis runs, the same
  procedure with bench/bare_huey_app.py, a plain RedisHuey (Huey's defaults, Redis database 14)
  with the same two tasks, the no-op leaving the same mark: `huey_consumer
  bench.bare_huey_app.huey` with Sprig's consumer flags, and a producer that enqueues and counts
  as Sprig's does (no records, so none are waited for). redis_records_on_per_bare and
  redis_records_off_per_bare = Sprig's end-to-end median / bare Huey's.
The consumers run with -q, as the bare-Huey reference figures were measured (its default two
INFO lines per task cost about 12%).
"""
import argparse
import datetime
import importlib
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

REDIS_URL = 'redis://127.0.0.1:6379/13'
BARE_URL = 'redis://127.0.0.1:6379/14'  # bench/bare_huey_app.py's, kept apart from Sprig's keys
TARGETS = {'redis_records_on_end_to_end_per_s': 1500, 'records_cost_max': 0.2, 'lateness_p99_max_s': 1.1,
           'redis_records_on_per_bare_min': 2}
CONSUMER_FLAGS = ['-w', '4', '-k', 'thread', '-q']  # Sprig's consumer and bare Huey's alike
WARM_UP = 20  # no-op tasks run before the clock starts
DELAY = 2  # seconds ahead that the lateness tasks are scheduled
LATE_TASKS, LATE_SPACING = 40, 0.05
STOP_TIMEOUT = 15  # seconds a consumer gets after SIGINT before SIGKILL
RECORDS_SETTLE = 2  # seconds the record counts must hold still to be taken as final (100 flush windows)
RECORDS_TIMEOUT = 30  # seconds the producer waits for the record writers at most

if __name__ == 'bench.tasks':
    # The task side, in the consumer and in the producer: the app's huey, bound by tasks.py to the
    # settings in this process's environment, plus the benchmark's two tasks.
    from bench.noop_tasks import register
    from tasks import huey

    noop, clock = register(huey)


# Producer (a process per scenario, this file imported as bench.tasks) ------------------------------

def wait_marks(path: Path, target: int, timeout: float) -> float:
    """Wait until `target` tasks have left their mark; return the time.perf_counter() it was seen."""
    deadline = time.monotonic() + timeout
    while path.stat().st_size < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f'{path.stat().st_size} of {target} tasks ran within {timeout} s')
        time.sleep(0.002)
    return time.perf_counter()


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def epoch(eta: datetime.datetime) -> float:
    return eta.replace(tzinfo=datetime.UTC).timestamp()  # Huey's etas are naive UTC


def count_records(since: datetime.datetime) -> tuple[int, int]:
    """(no-op records created since `since`, how many of them are not in a terminal state)."""
    from models import TaskRecord
    from sprig.queue.records import TERMINAL

    records = TaskRecord.select().where(TaskRecord.name == 'noop', TaskRecord.created_at >= since)
    return records.count(), records.where(TaskRecord.state.not_in(TERMINAL)).count()


def wait_records(since: datetime.datetime, expected: int) -> dict:
    """Count the records at once, then again until the writers are done (see the docstring)."""
    first = seen = count_records(since)
    started = still_since = time.monotonic()
    while (seen != (expected, 0) and time.monotonic() - still_since < RECORDS_SETTLE
           and time.monotonic() - started < RECORDS_TIMEOUT):
        time.sleep(0.05)
        now = count_records(since)
        if now != seen:
            seen, still_since = now, time.monotonic()
    return {'records_written_first_look': first[0], 'records_not_terminal_first_look': first[1],
            'records_written': seen[0], 'records_not_terminal': seen[1],
            'records_wait_s': round(time.monotonic() - started, 3)}


def produce(count: int, lateness: bool, timeout: float) -> dict:
    import models
    from models import database
    from sprig.db.schema import create_tables

    create_tables()
    started_at = models.utcnow()  # a shared --database-url may hold records of earlier runs
    figures = drain(noop, clock, count, timeout)
    with database.connection_context():
        # A sanity check, after the clock: every no-op got its record (records on) or none did.
        figures |= wait_records(started_at, WARM_UP + count if huey.tracking else 0)
    if lateness:
        results = []
        for _ in range(LATE_TASKS):
            results.append(clock.schedule(delay=DELAY))
            time.sleep(LATE_SPACING)
        late = [result.get(blocking=True, timeout=30) - epoch(result.task.eta) for result in results]
        figures['lateness_s'] = {'p50': round(nearest_rank(late, 50), 3), 'p99': round(nearest_rank(late, 99), 3),
                                 'max': round(max(late), 3), 'min': round(min(late), 3), 'tasks': len(late)}
    return figures


def drain(noop, clock, count: int, timeout: float) -> dict:
    """The timed part, Sprig's and bare Huey's: warm up, enqueue `count` no-ops, wait for their marks."""
    marks = Path(os.environ['BENCH_MARKS'])
    marks.touch()
    clock().get(blocking=True, timeout=60)  # the consumer is up
    for _ in range(WARM_UP):
        noop()
    wait_marks(marks, WARM_UP, 60)

    started = time.perf_counter()
    for _ in range(count):
        noop()
    enqueued = time.perf_counter()
    drained = wait_marks(marks, WARM_UP + count, timeout)
    return {
        'enqueue_per_s': round(count / (enqueued - started)),
        'end_to_end_per_s': round(count / (drained - started)),
        'enqueue_s': round(enqueued - started, 3),
        'end_to_end_s': round(drained - started, 3),
    }


# Orchestrator --------------------------------------------------------------------------------------

class Child:
    """A process of a scenario, output to files in its data directory, stopped by its pid."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path, name: str):
        self.out_path, self.err_path = logs / f'{name}.out', logs / f'{name}.err'
        with self.out_path.open('w') as out, self.err_path.open('w') as err:
            self.proc = subprocess.Popen(args, cwd=PROJECT_DIR, env=env, stdout=out, stderr=err)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGINT, then SIGKILL if it has not exited within timeout."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            if self.wait(timeout) is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, lines: int = 5) -> str:
        return ' | '.join(self.err_path.read_text(errors='replace').strip().splitlines()[-lines:])


DATABASE_VARIABLES = ('SPRIG_DATABASE_URL', 'SPRIG_APP_SECRET_KEY')


def child_env(data: Path, queue: str, url: str, records: bool) -> dict[str, str]:
    """This environment minus any SPRIG_* setting, plus the scenario's (and --database-url's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith('SPRIG_') or k in DATABASE_VARIABLES}
    env = {**base, 'SPRIG_DATA_DIR': str(data), 'SPRIG_QUEUE_NAME': queue,
           'SPRIG_QUEUE_RECORDS': 'true' if records else 'false', 'BENCH_MARKS': str(data / 'marks'),
           'BENCH_QUEUE': queue,  # bare Huey's name (bench/bare_huey_app.py reads no SPRIG_* setting)
           'PYTHONPATH': str(PROJECT_DIR), 'PYTHONUNBUFFERED': '1'}
    if url:
        env['SPRIG_QUEUE_URL'] = url
    return env


def scenario(work: Path, backend: str, records: bool, count: int, timeout: float, lateness: bool) -> dict:
    """One run; backend is 'sqlite', 'redis' or 'bare' (plain RedisHuey, records ignored)."""
    bare = backend == 'bare'
    data = work / (f'{backend}-{secrets.token_hex(2)}' if bare
                   else f'{backend}-records-{"on" if records else "off"}-{secrets.token_hex(2)}')
    data.mkdir()
    queue = f'{"bare" if bare else "bench"}{secrets.token_hex(4)}'
    env = child_env(data, queue, REDIS_URL if backend == 'redis' else '', records)
    program = str(Path(sys.executable).parent / 'huey_consumer')
    consumer_args = [program, 'bench.bare_huey_app.huey' if bare else 'bench.tasks.huey', *CONSUMER_FLAGS]
    if backend == 'sqlite':
        consumer_args += ['-m', '1']
    consumer = producer = None
    try:
        consumer = Child(consumer_args, env, data, 'consumer')
        producer_args = [sys.executable, str(Path(__file__).resolve()), '--produce', '--tasks', str(count),
                         '--timeout', str(timeout)]
        if lateness:
            producer_args.append('--lateness')
        if bare:
            producer_args.append('--bare')
        producer = Child(producer_args, env, data, 'producer')
        code = producer.wait(timeout + 120)
        if code is None:
            return {'error': f'producer still running after {timeout + 120} s'}
        if code != 0:
            return {'error': f'producer exited {code}: {producer.tail()}',
                    'consumer': consumer.tail() if consumer.proc.poll() is not None else 'running'}
        return json.loads(producer.out_path.read_text().strip().splitlines()[-1])
    finally:
        for child in (producer, consumer):
            if child is not None:
                child.stop()
        if backend != 'sqlite':
            forget_queue(BARE_URL if bare else REDIS_URL, queue)


def forget_queue(url: str, queue: str) -> None:
    """Delete the Redis keys that name the queue (never anything else)."""
    import redis
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    keys = list(client.scan_iter(f'*{queue}*'))
    if keys:
        client.delete(*keys)
    client.close()


def redis_missing() -> str | None:
    import redis
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return f'Redis not reachable at {REDIS_URL}: {exc}'
    finally:
        client.close()
    return None


def measure(work: Path, backend: str, count: int, timeout: float, repeat: int) -> dict:
    """`repeat` rounds of records on, records off and, on Redis, bare Huey, interleaved so that a
    slow spell of the machine weighs on all; each figure is the median of its runs, the end-to-end
    rates are all listed."""
    runs: dict[str, list[dict]] = {'records_on': [], 'records_off': []}
    if backend == 'redis':
        runs['bare'] = []
    for round_ in range(repeat):
        runs['records_on'].append(scenario(work, backend, True, count, timeout, round_ == 0))
        runs['records_off'].append(scenario(work, backend, False, count, timeout, False))
        if 'bare' in runs:
            runs['bare'].append(scenario(work, 'bare', False, count, timeout, False))
    figures: dict = {}
    for kind, results in runs.items():
        failed = [result for result in results if 'error' in result]
        figures[kind] = failed[0] if failed else medians(results)
    on, off = figures['records_on'], figures['records_off']
    if 'lateness_s' in runs['records_on'][0]:
        figures['lateness_s'] = runs['records_on'][0]['lateness_s']
    if 'end_to_end_per_s' in on and 'end_to_end_per_s' in off:
        figures['records_cost'] = round(1 - on['end_to_end_per_s'] / off['end_to_end_per_s'], 3)
    return figures


def medians(results: list[dict]) -> dict:
    keys = ('enqueue_per_s', 'end_to_end_per_s', 'enqueue_s', 'end_to_end_s')
    figures = {key: statistics.median(result[key] for result in results) for key in keys}
    figures['end_to_end_runs'] = [result['end_to_end_per_s'] for result in results]
    for key in ('records_written_first_look', 'records_not_terminal_first_look', 'records_written',
                'records_not_terminal', 'records_wait_s'):
        if key in results[0]:  # bare Huey's runs have no records
            figures[key] = [result[key] for result in results]
    return figures


def per_bare(redis_figures: dict) -> dict:
    """Sprig's Redis end-to-end medians over bare Huey's, from the same rounds (null if not measured)."""
    bare = redis_figures.get('bare', {}).get('end_to_end_per_s')
    ratios = {}
    for kind in ('records_on', 'records_off'):
        rate = redis_figures.get(kind, {}).get('end_to_end_per_s')
        ratios[f'redis_{kind}_per_bare'] = None if rate is None or not bare else round(rate / bare, 3)
    return ratios


def verdicts(results: dict) -> dict:
    """Each target: true, false, or null when not measured."""
    met: dict[str, bool | None] = {}
    redis_rate = results['redis'].get('records_on', {}).get('end_to_end_per_s')
    met['redis_records_on_end_to_end'] = (None if redis_rate is None
                                          else redis_rate >= TARGETS['redis_records_on_end_to_end_per_s'])
    ratio = results['redis_records_on_per_bare']
    met['redis_records_on_per_bare'] = None if ratio is None else ratio >= TARGETS['redis_records_on_per_bare_min']
    for backend in ('sqlite', 'redis'):
        cost = results[backend].get('records_cost')
        met[f'{backend}_records_cost'] = None if cost is None else cost <= TARGETS['records_cost_max']
        p99 = results[backend].get('lateness_s', {}).get('p99')
        met[f'{backend}_lateness_p99'] = None if p99 is None else p99 < TARGETS['lateness_p99_max_s']
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=10_000, help='no-op tasks per scenario (default 10000)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: 1000 tasks, one round')
    parser.add_argument('--repeat', type=int, default=3, help='rounds of records on and off per queue (default 3)')
    parser.add_argument('--timeout', type=float, default=120, help='seconds a scenario may take to drain')
    parser.add_argument('--database-url', help='app database for the records (default: a fresh SQLite file '
                        'per scenario), e.g. postgresql://postgres@127.0.0.1:5432/sprig_bench')
    parser.add_argument('--produce', action='store_true', help=argparse.SUPPRESS)  # the producer process
    parser.add_argument('--lateness', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--bare', action='store_true', help=argparse.SUPPRESS)  # a bare Huey producer
    args = parser.parse_args()
    count = 1000 if args.quick else args.tasks
    repeat = 1 if args.quick else max(1, args.repeat)
    if args.database_url:  # read by the producer and consumer processes through their environment
        os.environ.update({'SPRIG_DATABASE_URL': args.database_url, 'SPRIG_APP_SECRET_KEY': secrets.token_urlsafe(32)})
        results_database = args.database_url.split('@')[-1]
    else:
        results_database = 'sqlite (a fresh file per scenario)'
    if args.produce and args.bare:
        side = importlib.import_module('bench.bare_huey_app')
        print(json.dumps(drain(side.noop, side.clock, count, args.timeout)))
        return
    if args.produce:
        side = importlib.import_module('bench.tasks')
        print(json.dumps(side.produce(count, args.lateness, args.timeout)))
        return

    started = time.monotonic()
    results: dict = {'tasks': count, 'rounds': repeat, 'database': results_database, 'targets': TARGETS}
    with tempfile.TemporaryDirectory(prefix='sprig-bench-tasks-', ignore_cleanup_errors=True) as tmp:
        results['sqlite'] = measure(Path(tmp), 'sqlite', count, args.timeout, repeat)
        missing = redis_missing()
        results['redis'] = {'skipped': missing} if missing else measure(Path(tmp), 'redis', count, args.timeout, repeat)
    results |= per_bare(results['redis'])
    results['met'] = verdicts(results)
    results['seconds'] = round(time.monotonic() - started, 1)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
