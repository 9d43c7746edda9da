"""Huey as Huey documents it, for a task author, with a real `huey_consumer` for each item: on both
storages, with records on and off, Sprig's additions intact."""
import datetime
import enum
import signal
import subprocess
import time

import othertasks
import pytest
import testtasks
from conftest import PROJECT_DIR, Engine, engine_env, make_settings, process_env, python, record, wait_state, wait_until
from huey.constants import EmptyData

import tasks
from models import ConsumerBeat, database
from sprig.db.schema import create_tables
from sprig.queue.consumer import SprigConsumer

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


class OnlyHere(enum.Enum):
    """A class the consumer cannot import: an argument of it cannot be unpickled there."""

    VALUE = 1


@pytest.fixture(params=[('sqlite', 'on'), ('sqlite', 'off'), ('redis', 'on'), ('redis', 'off')],
                ids=lambda p: f'{p[0]}-records-{p[1]}')
def author(request, tmp_path, spawn, unique):
    """A task author's setting: one storage, records on or off, the test tasks' consumer."""
    kind, records = request.param
    env = engine_env(kind, request, unique) | {'SPRIG_QUEUE_RECORDS': 'true' if records == 'on' else 'false'}
    tasks.configure(make_settings(tmp_path, **env))
    create_tables()
    yield Engine({**env, 'TESTTASKS_DIR': str(tmp_path), 'PYTHONPATH': str(PROJECT_DIR / 'tests')}, tmp_path, spawn)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def records_on() -> bool:
    return tasks.huey.settings.queue.records


@pytest.mark.parametrize('author', [('redis', 'on')], indirect=True, ids=['redis-records-on'])
def test_a_blocking_result_waits_as_long_as_asked(author):
    author.consumer('consumer')
    started = time.monotonic()
    assert testtasks.nap(7).get(blocking=True, timeout=10) == 'rested'  # past the socket's 5 s
    assert testtasks.nap(6).get(blocking=True) == 'rested'  # no timeout: for ever
    assert time.monotonic() - started >= 13


@pytest.mark.parametrize('author', [('redis', 'on')], indirect=True, ids=['redis-records-on'])
def test_ping_waits_for_its_timeout(author, tmp_path):
    busy = author.consumer('consumer')
    for _ in range(2):
        testtasks.nap(7)  # both workers busy: the ping waits about 7 s
    done = subprocess.run(python('app.py', 'ping', '--timeout', '20'), cwd=PROJECT_DIR,
                          env=process_env(tmp_path, **author.env), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 'pong from' in done.stdout, done.stderr
    busy.stop()


def test_a_task_revoked_while_it_runs_ends_with_its_flag_cleared(author):
    author.consumer('consumer')
    running = testtasks.nap(1.5)
    wait_until(lambda: author.traces('naps'), 15, 'the nap did not start')
    running.revoke()
    assert running.get(blocking=True, timeout=10) == 'rested'
    assert not running.is_revoked()
    assert tasks.huey.storage.peek_data(running.task.revoke_id) is EmptyData


def test_any_argument_huey_pickles_is_accepted(author):
    author.consumer('consumer')
    loop = [1]
    loop.append(loop)
    for value in ({(1, 2): 'tuple key'}, {b'k': 1}, datetime.date(2026, 1, 1), testtasks.Colour.RED,
                  frozenset({1}), {datetime.date(2026, 1, 1): 1}):
        assert testtasks.echo(value).get(blocking=True, timeout=10) == repr(value)
    assert testtasks.echo(loop).get(blocking=True, timeout=10) == '[1, [...]]'


def beating(pid: int) -> bool:
    with database.connection_context():
        return ConsumerBeat.select().where(ConsumerBeat.pid == pid).exists()


def test_sighup_restarts_the_consumer(author):
    consumer = author.consumer('consumer')
    assert testtasks.add(1, 2).get(blocking=True, timeout=15) == 3
    # Its handlers are set once it started (workers run tasks before): its first beat comes after.
    wait_until(lambda: beating(consumer.pid), 15, 'the consumer never beat', consumer.stderr)
    consumer.proc.send_signal(signal.SIGHUP)
    time.sleep(2)
    assert consumer.proc.poll() is None, consumer.stderr()
    assert testtasks.add(2, 3).get(blocking=True, timeout=20) == 5
    assert 'Consumer will restart' in consumer.stderr()


def test_a_refused_task_ends_failed_with_its_reason(author):
    author.consumer('consumer')
    assert testtasks.limited().get(blocking=True, timeout=10) == 'ran'
    refused = testtasks.limited()
    with pytest.raises(Exception, match='RateLimitExceeded'):
        refused.get(blocking=True, timeout=10)
    with tasks.huey.lock_task('held-by-the-test'):
        locked = testtasks.locked()
        with pytest.raises(Exception, match='unable to acquire lock'):
            locked.get(blocking=True, timeout=10)
    if records_on():
        rate, _ = wait_state(refused.id, 'failed')
        assert 'RateLimitExceeded' in rate.error
        lock, _ = wait_state(locked.id, 'failed')
        assert lock.error == 'TaskLockedException: unable to acquire lock held-by-the-test'


def test_huey_positional_options_and_a_consumer_stopped_before_it_started(author):
    task = testtasks.positional.s()
    assert (task.retries, task.retry_delay) == (2, 1)
    SprigConsumer(tasks.huey, workers=1, worker_type='thread').stop()  # as Huey allows
    writer = tasks.huey.writer
    tasks.ping(1.0)
    writer.stop()
    assert writer.thread is None and not writer.pending
    if records_on():
        assert record(task.id) is None  # never enqueued
    author.consumer('consumer')
    assert tasks.ping(2.0).get(blocking=True, timeout=15)['sent_at'] == 2.0  # a new writer thread


def test_a_crontab_every_minute_runs_as_the_consumer_starts(author):
    author.consumer('consumer', module='crontasks')
    wait_until(lambda: author.traces('minutes'), 15, 'every_minute did not run at start-up')


def test_a_task_the_consumer_cannot_run_ends_failed_saying_why(author):
    consumer = author.consumer('consumer')
    unknown, unreadable = othertasks.elsewhere(), testtasks.echo(OnlyHere.VALUE)
    assert testtasks.add(1, 1).get(blocking=True, timeout=15) == 2  # the consumer runs
    if records_on():
        failed, _ = wait_state(unknown.id, 'failed')
        assert 'no task othertasks.elsewhere in consumer' in failed.error
        assert 'huey_consumer yourmodule.huey' in failed.error
        failed, _ = wait_state(unreadable.id, 'failed')
        assert failed.error == ("the consumer could not read it: ModuleNotFoundError: No module named "
                                "'test_faithful'")
    assert 'not found in TaskRegistry' in consumer.stderr()
