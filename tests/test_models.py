"""The database binding: SQLite with its pragmas, PostgreSQL and MySQL by URL."""
import subprocess
import sys
import time

import pytest
from conftest import PROJECT_DIR, SECRET, make_settings, process_env

import models
import tasks
from models import TaskRecord, database
from sprig.db.connection import init_db
from sprig.db.schema import create_tables
from sprig.queue import records


@pytest.fixture(params=['sqlite', 'postgres', 'mysql'])
def database_url(request, tmp_path):
    if request.param == 'sqlite':
        return ''
    return request.getfixturevalue(f'{request.param}_url')


def test_binds_from_url_and_creates_tables_idempotently(tmp_path, database_url):
    init_db(make_settings(tmp_path, SPRIG_DATABASE_URL=database_url, SPRIG_APP_SECRET_KEY=SECRET))
    with database.connection_context():
        assert database.execute_sql('SELECT 1').fetchone()[0] == 1
        database.drop_tables(list(reversed(models.MODELS)), safe=True)  # the server databases are shared
    create_tables()
    create_tables()
    assert models.is_empty()


def test_sqlite_runs_wal_with_foreign_keys_and_a_busy_timeout(tmp_path):
    init_db(make_settings(tmp_path))
    create_tables()
    with database.connection_context():
        pragma = lambda name: database.execute_sql(f'PRAGMA {name}').fetchone()[0]  # noqa: E731
        assert (pragma('journal_mode'), pragma('foreign_keys'), pragma('busy_timeout')) == ('wal', 1, 10000)
    assert (tmp_path / 'sprig.db').exists()


def test_processes_starting_together_on_a_fresh_sqlite_file(tmp_path):
    """The switch to WAL needs the file to itself; SQLite does not wait for it, Sprig does."""
    start_at = time.time() + 1.5
    code = ('import time; from sprig import settings; from sprig.db import connection, schema; '
            f'connection.init_db(settings.load_settings()); time.sleep(max(0, {start_at} - time.time())); '
            'schema.create_tables()')
    env = process_env(tmp_path, PYTHONPATH=str(PROJECT_DIR))
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors


def test_task_record_statements_on_every_database(tmp_path, database_url):
    """The engine writes its hot statements by hand: they must run on each backend."""
    tasks.configure(make_settings(tmp_path, SPRIG_DATABASE_URL=database_url, SPRIG_APP_SECRET_KEY=SECRET,
                                  SPRIG_QUEUE_URL=f'sqlite:///{tmp_path}/q.db'))
    create_tables()
    with database.connection_context():
        TaskRecord.delete().execute()
        task = tasks.ping.s(2.5)
        other, sql = tasks.ping.s(1.0), records.statements()
        started = records.event(tasks.huey, 'started')
        with database.atomic():
            records.apply([  # as a consumer's writer sees them: another task interleaved
                records.Start(other, ('started', models.utcnow(), 'h:2:y', started, other.id)),  # its row not in yet
                records.hot_update(sql.insert, *records.new_row(tasks.huey, task)),
                records.Start(task, ('started', models.utcnow(), 'h:1:x', started, task.id)),
                records.hot_update(sql.finished, 'succeeded', models.utcnow(), None, '"pong"',
                                   records.event(tasks.huey, 'succeeded'), task.id),
            ], tasks.huey)
            records.apply([records.hot_update(sql.insert, *records.new_row(tasks.huey, other))], tasks.huey)  # late
        record = TaskRecord.get_by_id(task.id)
        assert (TaskRecord.get_by_id(other.id).state, TaskRecord.get_by_id(other.id).consumer) == ('started', 'h:2:y')
    assert (record.state, record.consumer, record.result, record.args) == ('succeeded', 'h:1:x', '"pong"',
                                                                           '{"sent_at": 2.5}')
    assert record.started_at <= record.finished_at and record.requeued is False
    assert [event['state'] for event in records.timeline(record)] == ['queued', 'started', 'succeeded']
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_order_task_and_lookup_statements_on_every_database(tmp_path, database_url):
    """The order task's prepared statements and prepared.first (which converts each column itself)
    must run on each backend."""
    import datetime
    import secrets
    from decimal import Decimal

    from models import Course, Order, SeckillItem, User, utcnow
    from sprig.db.prepared import first
    from sprig.shop import seckill

    tasks.configure(make_settings(tmp_path, SPRIG_DATABASE_URL=database_url, SPRIG_APP_SECRET_KEY=SECRET))
    create_tables()
    tag = secrets.token_hex(4)  # the server databases are shared: touch only this test's rows
    with database.connection_context():
        buyers = [User.create(username=f'b{tag}{n}', password_hash='x') for n in range(2)]
        course = Course.create(name=f'course {tag}', kind='actual')
        item = SeckillItem.create(course=course, price=Decimal('9.90'), stock_total=1, stock_left=1,
                                  starts_at=utcnow(), ends_at=utcnow() + datetime.timedelta(hours=1))
        try:
            won = seckill.place_order(buyers[0].id, item.id, f'{tag}-1', 60)
            assert seckill.place_order(buyers[0].id, item.id, f'{tag}-1', 60) == won  # a re-run
            assert seckill.place_order(buyers[1].id, item.id, f'{tag}-2', 60) == {'outcome': 'sold_out'}
            order = first(Order, seckill.ORDER_BY_TASK(), f'{tag}-1')
            assert (order.id, order.user_id, order.price, order.live, order.status) == (
                won['order_id'], buyers[0].id, Decimal('9.90'), True, 'pending_payment')
            assert isinstance(order.created_at, datetime.datetime) and not order.dirty_fields
            assert first(SeckillItem, seckill.SALE_BY_ID(), item.id).stock_left == 0
            assert first(Order, seckill.ORDER_BY_TASK(), f'{tag}-2') is None
        finally:
            Order.delete().where(Order.item == item.id).execute()
            SeckillItem.delete().where(SeckillItem.id == item.id).execute()
            Course.delete().where(Course.id == course.id).execute()
            User.delete().where(User.id.in_([buyer.id for buyer in buyers])).execute()
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))
