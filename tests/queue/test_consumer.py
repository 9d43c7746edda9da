"""The consumer at rest: the leader holds its interval clocks in memory and writes nothing while
nothing is due; the record writer sleeps on a condition; schedules follow the configured settings."""
import sys
import threading
import time

import pytest
from conftest import counting_queries, make_settings, wait_until

import tasks
from models import Schedule, TaskRecord, database
from sprig.db.schema import create_tables
from sprig.queue import dashboard
from sprig.queue.consumer import BEAT_EVERY, start_embedded_consumer, stop_embedded_consumer

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)
WRITES = ('INSERT', 'UPDATE', 'DELETE')


@pytest.fixture
def consumer(tmp_path):
    tasks.configure(make_settings(tmp_path))  # a SQLite queue, not immediate
    create_tables()
    running = start_embedded_consumer(tasks.huey)
    yield running
    stop_embedded_consumer(running)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def clocks_written() -> int:
    with database.connection_context():
        return Schedule.select().where(Schedule.last_run.is_null(False)).count()


def first_runs_done() -> bool:
    tasks.huey.writer.flush()
    with database.connection_context():
        ran = TaskRecord.select().where(TaskRecord.finished_at.is_null(False)).count()
        return ran >= len(tasks.huey.intervals) and not TaskRecord.select().where(
            TaskRecord.finished_at.is_null()).exists()


@pytest.fixture
def nothing_due_soon(monkeypatch) -> None:
    """Only Sprig's own intervals (a minute or more): not testtasks' tick, which other test
    modules register on the same Huey."""
    for name, interval in list(tasks.huey.intervals.items()):
        if tasks.huey.period(interval) < 60:
            monkeypatch.delitem(tasks.huey.intervals, name)


def test_the_idle_leader_writes_nothing_but_its_heartbeat_and_lease(nothing_due_soon, consumer):
    wait_until(lambda: tasks.huey.leader, 15, 'no leader')
    wait_until(lambda: clocks_written() == len(tasks.huey.intervals), 15, 'the first runs not made')
    wait_until(first_runs_done, 15, 'the first runs not finished')  # their records written
    seconds = 3 * BEAT_EVERY
    with counting_queries() as statements:
        time.sleep(seconds)
    writes = [sql for sql in statements if sql.lstrip().upper().startswith(WRITES)]
    assert not [sql for sql in statements if 'schedule' in sql.lower()], statements
    # A beat is one heartbeat update and one lease renewal.
    assert len(writes) <= 2 * (seconds / BEAT_EVERY + 1), writes
    assert all('consumerbeat' in sql.lower() or 'lease' in sql.lower() for sql in writes), writes


def test_the_record_writer_sleeps_on_a_condition_when_idle(consumer):
    tasks.ping(1.0).get(blocking=True, timeout=10)
    writer = tasks.huey.writer
    wait_until(lambda: not writer.pending, 5, 'the batch not written')
    time.sleep(0.1)
    frame = sys._current_frames()[writer.thread.ident]
    waiting_in = []
    while frame is not None:
        waiting_in.append(frame.f_code.co_name)
        frame = frame.f_back
    assert waiting_in[:2] == ['wait', 'run'] and threading.Condition.wait.__code__.co_name == 'wait', waiting_in


def test_interval_periods_come_from_the_configured_settings(tmp_path):
    tasks.configure(make_settings(tmp_path, SPRIG_BANNER_REFRESH_INTERVAL='7', SPRIG_QUEUE_IMMEDIATE='true'))
    create_tables()
    with database.connection_context():
        panel = {row['name']: row['schedule'] for row in dashboard.periodic_panel(tasks.huey)}
    assert panel['rebuild_banner_cache'] == 'every 7 s'
    assert panel['prune_records'] == 'every 3600 s'
