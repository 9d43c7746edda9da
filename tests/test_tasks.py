"""Tasks on a real (non-immediate) queue, executed as a consumer thread does: connections and records."""
import datetime
import subprocess
import sys
import threading

import pytest
from conftest import make_settings, process_env
from huey import crontab
from peewee import OperationalError

import tasks
from models import TaskRecord, database
from sprig.db.schema import create_tables
from sprig.queue import consumer, records
from sprig.queue.consumer import LeaderScheduler
from sprig.queue.engine import SprigHuey
from sprig.settings import PROJECT_DIR

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


@pytest.fixture
def queue(tmp_path):
    tasks.configure(make_settings(tmp_path))  # a SQLite queue, not immediate
    create_tables()
    yield tasks.huey
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def run_one(queue) -> dict:
    """Dequeue and execute one task in a fresh thread, as a consumer's worker does."""
    seen = {}

    def worker():
        seen['value'] = queue.execute(queue.dequeue())
        seen['closed'] = database.is_closed()
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    queue.writer.flush()  # what the writer thread would commit within FLUSH_EVERY
    return seen


def test_a_worker_keeps_its_connection_unless_the_database_failed(queue):
    @queue.task()
    def count_one() -> int:
        return database.execute_sql('SELECT 1').fetchone()[0]

    @queue.task()
    def break_down() -> None:
        raise OperationalError('server closed the connection unexpectedly')

    count_one()
    assert run_one(queue) == {'value': 1, 'closed': False}
    failed = break_down()
    assert run_one(queue)['closed'] is True
    with database.connection_context():
        record = TaskRecord.get_by_id(failed.id)
    assert (record.state, record.error) == ('failed', 'OperationalError: server closed the connection unexpectedly')


def test_immediate_mode_leaves_the_callers_connection_open(settings):
    tasks.configure(settings)

    @tasks.huey.task()
    def count_two() -> int:
        return database.execute_sql('SELECT 2').fetchone()[0]

    with database.connection_context():
        assert count_two().get() == 2
        assert not database.is_closed()


def test_records_follow_a_task_that_succeeds(queue):
    result = tasks.ping(1.0)
    assert records.stub(queue, result.id).state == 'queued'  # readable at once, before its row lands
    queue.writer.flush()
    with database.connection_context():
        assert TaskRecord.get_by_id(result.id).state == 'queued'
    run_one(queue)
    with database.connection_context():
        record = TaskRecord.get_by_id(result.id)
    assert (record.state, record.name, record.args) == ('succeeded', 'ping', '{"sent_at": 1.0}')
    assert record.started_at <= record.finished_at


def test_a_task_started_before_its_row_landed_gets_its_row_from_the_consumer(queue):
    result = tasks.ping(2.0)
    with queue.writer.ready:
        queue.writer.pending.clear()  # the producer's insert, not committed yet (another process's batch)
    run_one(queue)
    with database.connection_context():
        record = TaskRecord.get_by_id(result.id)
    assert (record.state, record.name, record.args) == ('succeeded', 'ping', '{"sent_at": 2.0}')
    assert record.started_at is not None


def test_secret_arguments_are_masked_in_the_record(queue):
    result = tasks.queue_sms_code('13800138000', '123456', 'register')
    queue.writer.flush()
    with database.connection_context():
        record = TaskRecord.get_by_id(result.id)
    assert '123456' not in record.args and '"code": "***"' in record.args
    assert '13800138000' in record.args and record.payload is None  # nor kept to run again


def test_crontab_schedules_are_read_in_the_configured_time_zone(tmp_path):
    local = SprigHuey(make_settings(tmp_path, SPRIG_APP_TIMEZONE='Asia/Shanghai', SPRIG_QUEUE_RECORDS='false'))
    local.leader = True

    @local.periodic_task(crontab(minute='0', hour='9'))
    def morning() -> None:
        pass
    scheduler = LeaderScheduler(local, threading.Event(), 1, True)
    scheduler.enqueue_periodic_tasks(datetime.datetime(2026, 1, 1, 9, 0))  # 09:00 UTC: 17:00 there
    assert local.pending_count() == 0
    scheduler.enqueue_periodic_tasks(datetime.datetime(2026, 1, 1, 1, 0))  # 01:00 UTC: 09:00 there
    assert local.pending_count() == 1
    scheduler.loop()  # as Huey's consumer calls it, with no time: the leader's check uses now


def test_a_queued_task_gone_from_the_queue_is_rescued_on_the_second_look(queue):
    @queue.task()
    def not_idempotent() -> None:
        pass
    kept, taken, plain = tasks.ping(1.0), tasks.ping(2.0), not_idempotent()
    queue.writer.flush()
    with database.connection_context():  # old enough for a consumer to have taken them
        TaskRecord.update(created_at=records.seconds_ago(60)).execute()
        # A consumer took `taken` and `plain` and died before writing that they started.
        messages = [queue.storage.dequeue() for _ in range(3)]
        queue.storage.enqueue(messages[0])
        suspects = consumer.sweep_vanished(queue, set())
        assert suspects == {taken.id, plain.id}
        assert TaskRecord.get_by_id(taken.id).state == 'queued'  # not yet: it may be starting
        assert consumer.sweep_vanished(queue, suspects) == set()
        queue.writer.flush()
        assert TaskRecord.get_by_id(kept.id).state == 'queued'
        rerun = TaskRecord.get_by_id(taken.id)
        assert (rerun.state, rerun.requeued) == ('queued', True)  # idempotent: enqueued once more
        lost = TaskRecord.get_by_id(plain.id)
        assert (lost.state, lost.error) == ('lost', 'taken from the queue by a consumer that died')
    assert queue.pending_count() == 2


def test_a_producer_that_exits_at_once_leaves_every_record_written(tmp_path):
    """The record writer batches for 20 ms in a daemon thread: a process that enqueues and exits
    (a web process stopping, a script) writes what it holds on its way out."""
    code = ('import tasks\nfrom sprig.db.schema import create_tables\ncreate_tables()\n'
            'for n in range(50):\n    tasks.ping(float(n))\n')
    subprocess.run([sys.executable, '-c', code], env=process_env(tmp_path), cwd=PROJECT_DIR, check=True, timeout=60)
    tasks.configure(make_settings(tmp_path))
    with database.connection_context():
        found = list(TaskRecord.select().where(TaskRecord.name == 'ping'))
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))
    assert len(found) == 50 and {records.timeline(record)[0]['state'] for record in found} == {'queued'}


def test_a_task_that_starts_before_its_row_is_written_keeps_its_enqueuer_s_values(queue):
    """A consumer may start a task before the producer's writer has inserted its row (another
    process, 20 ms of batching): the row it writes then comes from the stub the enqueue left, with
    the request that enqueued it and its 'queued' event (seen lost under load before)."""
    from sprig import logs
    logs.begin(request_id='req-before-its-row')
    result = tasks.ping(1.0)
    logs.begin()
    with queue.writer.ready:
        queue.writer.pending.clear()  # the producer's insert, still in its batch: not written yet
    run_one(queue)
    with database.connection_context():
        record = TaskRecord.get_by_id(result.id)
    assert record.state == 'succeeded' and record.request_id == 'req-before-its-row'
    assert [event['state'] for event in records.timeline(record)] == ['queued', 'started', 'succeeded']
