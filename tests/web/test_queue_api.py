"""The task routes: who may see what, filters, the queue overview, retry and revoke; retry delays."""
import datetime
import json

import pytest
import testtasks
import webtest
from conftest import bearer, make_settings

import app as sprig_app
import tasks
from models import ConsumerBeat, Lease, TaskRecord, User, database, utcnow
from sprig.db.schema import create_tables
from sprig.shop.accounts import hash_password, save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


@pytest.fixture
def site(tmp_path):
    """The app on a real SQLite queue that no consumer drains: records stay where the test puts them."""
    application = sprig_app.create_app(make_settings(tmp_path))
    create_tables()
    with database.connection_context():
        save_admin('admin_1', 'admin password 1')
        User.create(username='user_one', mobile='13800138001', password_hash=hash_password('user password 1'))
        User.create(username='user_two', mobile='13800138002', password_hash=hash_password('user password 2'))
    yield webtest.TestApp(application)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def record(**values) -> TaskRecord:
    defaults = {'id': f'task-{values.get("name", "x")}-{values.get("state", "queued")}', 'name': 'add',
                'state': 'queued', 'created_at': utcnow(), 'args': '{}'}
    with database.connection_context():
        return TaskRecord.create(**(defaults | values))


def test_a_task_is_visible_to_its_user_and_admins_only(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    one, two = bearer(site, 'user_one', 'user password 1'), bearer(site, 'user_two', 'user password 2')
    with database.connection_context():
        owner = User.get(User.username == 'user_one').id
    task = record(id='owned', user_id=owner)
    assert site.get(f'/api/v1/tasks/{task.id}', headers=one).json['result']['user_id'] == owner
    assert site.get(f'/api/v1/tasks/{task.id}', headers=admin).json['code'] == 100
    assert site.get(f'/api/v1/tasks/{task.id}', headers=two, status=404).json['msg'] == 'no task owned'
    site.get(f'/api/v1/tasks/{task.id}', status=401)
    site.get('/api/v1/tasks/unknown', headers=admin, status=404)


@pytest.mark.parametrize('path', ['/api/v1/admin/tasks', '/api/v1/admin/queue', '/api/v1/admin/tasks/stats'])
def test_admin_routes_refuse_users(site, path):
    site.get(path, status=401)
    assert site.get(path, headers=bearer(site, 'user_one', 'user password 1'), status=403).json['code'] == 403


def test_list_filters_pages_and_validates(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    base = utcnow()
    for i in range(5):
        record(id=f'ok{i}', name='add', state='succeeded', created_at=base + datetime.timedelta(seconds=i))
    record(id='bad', name='fail', state='failed', created_at=base)
    page = site.get('/api/v1/admin/tasks?state=succeeded&name=add&page=2&size=2', headers=admin).json['result']
    assert (page['count'], [item['id'] for item in page['items']]) == (5, ['ok2', 'ok1'])  # newest first
    assert site.get('/api/v1/admin/tasks?state=failed', headers=admin).json['result']['count'] == 1
    for query in ('state=nope', 'size=0', 'size=101', 'page=x', 'color=red'):
        assert site.get(f'/api/v1/admin/tasks?{query}', headers=admin, status=400).json['code'] == 400


def test_stats_for_the_last_hour(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    now = utcnow()
    for i, state in enumerate(['succeeded', 'succeeded', 'succeeded', 'failed']):
        record(id=f's{i}', name='add', state=state, started_at=now - datetime.timedelta(seconds=2), finished_at=now)
    stats = site.get('/api/v1/admin/tasks/stats', headers=admin).json['result']
    assert stats == [{'name': 'add', 'finished': 4, 'failed': 1, 'error_rate': 0.25, 'avg_seconds': 2.0}]


def test_queue_overview_lists_live_consumers_and_the_leader(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    now = utcnow()
    with database.connection_context():
        ConsumerBeat.create(id='h:1:a', host='h', pid=1, workers=4, started_at=now, beat_at=now)
        ConsumerBeat.create(id='h:2:b', host='h', pid=2, workers=4, started_at=now,
                            beat_at=now - datetime.timedelta(minutes=5))  # long dead
        Lease.create(name='scheduler', holder='h:1:a', expires=now + datetime.timedelta(seconds=5))
    tasks.ping(1.0)
    result = site.get('/api/v1/admin/queue', headers=admin).json['result']
    assert [c['id'] for c in result['consumers']] == ['h:1:a'] and result['leader'] == 'h:1:a'
    assert result['pending'] == 1 and result['scheduled'] == 0
    assert 'prune_records' in {p['name'] for p in result['periodic']}


def test_retry_runs_a_failed_task_again_with_its_arguments(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    record(id='failed-add', name='add', state='failed', payload=json.dumps([[2, 3], {}]))
    res = site.post('/api/v1/admin/tasks/failed-add/retry', headers=admin, status=202)
    tasks.huey.writer.flush()
    with database.connection_context():
        again = TaskRecord.get_by_id(res.json['task_id'])
    assert (again.name, again.state, again.args) == ('add', 'queued', '{"a": 2, "b": 3}')
    record(id='done-add', name='add', state='succeeded', payload='[[1, 1], {}]')
    assert 'cannot be retried' in site.post('/api/v1/admin/tasks/done-add/retry', headers=admin, status=409).text
    site.post('/api/v1/admin/tasks/missing/retry', headers=admin, status=404)


def test_revoke_a_queued_task_but_not_a_finished_one(site):
    admin = bearer(site, 'admin_1', 'admin password 1')
    queued = testtasks.add(1, 2)
    tasks.huey.writer.flush()  # what this process's writer thread does within 20 ms
    assert site.post(f'/api/v1/admin/tasks/{queued.id}/revoke', headers=admin).json['msg'] == 'revoked'
    with database.connection_context():
        assert TaskRecord.get_by_id(queued.id).state == 'revoked'
    assert tasks.huey.is_revoked(queued.id)  # the consumer will skip it
    site.post(f'/api/v1/admin/tasks/{queued.id}/revoke', headers=admin, status=409)


def test_retry_delays_grow_with_jitter_and_a_cap(tmp_path):
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_QUEUE_MAX_RETRY_DELAY='30'))
    task = testtasks.flaky.s('x', retries=5, retry_delay=8)
    task.retry_backoff = 2
    now = datetime.datetime(2026, 1, 1)
    delays = []
    for _ in range(4):
        tasks.huey._requeue_task(task, now)
        delays.append((task.eta - now).total_seconds())
    for delay, ceiling in zip(delays, (8, 16, 30, 30), strict=True):
        assert ceiling / 2 <= delay <= ceiling
