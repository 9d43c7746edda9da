"""Home banners: the cached list and its ETags, admin writes seen on the next read, the second
delete, the periodic rebuild with a real consumer, a cache that is down, and a miss storm."""
import logging
import time
import urllib.request

import pytest
import webtest
from conftest import (
    bearer,
    counting_queries,
    free_port,
    huey_consumer,
    make_settings,
    process_env,
    together,
    wait_until,
    waitress_thread,
)

import app as sprig_app
import tasks
from models import Banner, TaskRecord, User, database
from sprig.cache import aside as cached
from sprig.db.schema import create_tables
from sprig.shop import banners, demo, keys
from sprig.shop.accounts import hash_password, save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

BASE = 'https://shop.example'


def make_shop(tmp_path, **env) -> webtest.TestApp:
    """The app with an admin and a user; demo banners unless told otherwise."""
    settings = make_settings(tmp_path, SPRIG_APP_BASE_URL=BASE, **({'SPRIG_QUEUE_IMMEDIATE': 'true'} | env))
    application = sprig_app.create_app(settings)
    create_tables()
    with database.connection_context():
        save_admin('admin_1', 'admin password 1')
        User.create(username='user_one', mobile='13800138001', password_hash=hash_password('user password 1'))
    return webtest.TestApp(application)


@pytest.fixture
def shop(tmp_path):
    client = make_shop(tmp_path)
    with database.connection_context():
        demo.seed()
    return client


def titles(client) -> list[str]:
    return [banner['title'] for banner in client.get('/api/v1/home/banners').json['result']]


def test_miss_then_hit_with_etag_and_304(shop):
    first = shop.get('/api/v1/home/banners')
    assert first.headers['X-Cache'] == 'miss'
    assert first.json['result'][0] == {
        'id': 1, 'title': 'Python from zero to web', 'image': f'{BASE}/static/banners/python.svg',
        'link': '/courses/free', 'info': 'Free beginner courses: start today', 'orders': 1}
    second = shop.get('/api/v1/home/banners')
    assert second.headers['X-Cache'] == 'hit' and second.json == first.json
    etag = second.headers['ETag']
    assert etag == first.headers['ETag'] and etag.startswith('"')
    for given in (etag, f'W/{etag}', f'"other", {etag}', '*'):
        unchanged = shop.get('/api/v1/home/banners', headers={'If-None-Match': given}, status=304)
        assert unchanged.body == b'' and unchanged.headers['ETag'] == etag
    shop.get('/api/v1/home/banners', headers={'If-None-Match': '"stale"'}, status=200)


def test_only_shown_undeleted_banners_by_orders_then_id_at_most_count(tmp_path):
    client = make_shop(tmp_path, SPRIG_BANNER_COUNT='3')
    with database.connection_context():
        for title, orders, extra in [('b', 2, {}), ('a', 1, {}), ('hidden', 0, {'is_show': False}),
                                     ('deleted', 0, {'is_delete': True}), ('a2', 1, {}), ('late', 9, {})]:
            Banner.create(title=title, orders=orders, image='https://cdn.example/x.png', **extra)
    result = client.get('/api/v1/home/banners').json['result']
    assert [banner['title'] for banner in result] == ['a', 'a2', 'b']
    assert result[0]['image'] == 'https://cdn.example/x.png'  # already absolute: kept


def test_each_admin_write_shows_on_the_very_next_read(shop):
    admin = bearer(shop, 'admin_1', 'admin password 1')
    assert len(titles(shop)) == 3 and shop.get('/api/v1/home/banners').headers['X-Cache'] == 'hit'
    created = shop.post_json('/api/v1/admin/banners', {'title': 'New', 'image': '/static/banners/light.svg',
                                                       'orders': 0, 'link': 'https://example.org/a?b=1'},
                             headers=admin, status=201).json['result']
    assert titles(shop)[0] == 'New'
    shop.patch_json(f'/api/v1/admin/banners/{created["id"]}', {'title': 'Renamed', 'orders': 10}, headers=admin)
    assert titles(shop)[-1] == 'Renamed'
    shop.patch_json(f'/api/v1/admin/banners/{created["id"]}', {'is_show': False}, headers=admin)
    assert 'Renamed' not in titles(shop)
    shop.delete('/api/v1/admin/banners/1', headers=admin)
    assert titles(shop) == ['Flash sale: Linux for developers', 'Light courses, one evening each']
    with database.connection_context():
        assert Banner.get_by_id(1).is_delete  # a soft delete: the row stays
    listed = shop.get('/api/v1/admin/banners', headers=admin).json['result']
    assert [banner['title'] for banner in listed] == ['Flash sale: Linux for developers',
                                                      'Light courses, one evening each', 'Renamed']


def test_admin_writes_are_checked_and_bad_input_writes_nothing(shop):
    admin = bearer(shop, 'admin_1', 'admin password 1')
    user = bearer(shop, 'user_one', 'user password 1')
    good = {'title': 'T', 'image': 'static/banners/light.svg'}
    shop.post_json('/api/v1/admin/banners', good, status=401)
    shop.post_json('/api/v1/admin/banners', good, headers=user, status=403)
    shop.post('/api/v1/admin/banners/rebuild', headers=user, status=403)
    bad = shop.post_json('/api/v1/admin/banners', {
        'title': '  ', 'image': 'javascript:alert(1)', 'link': 'javascript:alert(1)', 'orders': 'many',
        'is_show': 'perhaps', 'colour': 'red'}, headers=admin, status=400).json
    assert set(bad['errors']) == {'title', 'image', 'link', 'orders', 'is_show', 'colour'}
    for image in ('//evil.example/x.png', '../secret', 'http://', 'https://a.example/"onerror="x'):
        shop.post_json('/api/v1/admin/banners', {**good, 'image': image}, headers=admin, status=400)
    assert shop.patch_json('/api/v1/admin/banners/1', {}, headers=admin, status=400).json['code'] == 400
    assert 'title' in shop.patch_json('/api/v1/admin/banners/1', {'title': None}, headers=admin,
                                      status=400).json['errors']
    shop.patch_json('/api/v1/admin/banners/99', {'title': 'x'}, headers=admin, status=404)
    shop.delete('/api/v1/admin/banners/99', headers=admin, status=404)
    shop.delete('/api/v1/admin/banners/abc', headers=admin, status=404)
    shop.post('/api/v1/admin/banners', 'not json', headers={**admin, 'Content-Type': 'application/json'},
              status=400)
    with database.connection_context():
        assert Banner.select().count() == 3
        assert Banner.get_by_id(1).title == 'Python from zero to web'
    shop.delete('/api/v1/admin/banners/1', headers=admin)
    shop.delete('/api/v1/admin/banners/1', headers=admin, status=404)  # already gone
    shop.patch_json('/api/v1/admin/banners/1', {'title': 'x'}, headers=admin, status=404)


def test_rebuild_endpoint_queues_the_task(shop):
    admin = bearer(shop, 'admin_1', 'admin password 1')
    answer = shop.post('/api/v1/admin/banners/rebuild', headers=admin, status=202).json
    assert answer['code'] == 100 and len(answer['task_id']) >= 32
    assert shop.get('/api/v1/home/banners').headers['X-Cache'] == 'hit'  # immediate mode: it ran


def test_cache_down_reads_come_from_the_database(shop, tmp_path, caplog):
    admin = bearer(shop, 'admin_1', 'admin password 1')  # signing in needs the cache (its rate limits)
    down = make_settings(tmp_path, SPRIG_APP_BASE_URL=BASE, SPRIG_QUEUE_IMMEDIATE='true',
                         SPRIG_CACHE_URL=f'redis://127.0.0.1:{free_port()}/0')  # nobody listens there
    client = webtest.TestApp(sprig_app.create_app(down))
    with caplog.at_level(logging.WARNING, logger='sprig.cache'):
        for _ in range(3):
            reply = client.get('/api/v1/home/banners')
            assert reply.headers['X-Cache'] == 'bypass' and len(reply.json['result']) == 3
        assert 'Python from zero to web' in client.get('/').text
        client.post_json('/api/v1/admin/banners', {'title': 'Written anyway', 'image': 'static/x.svg'},
                         headers=admin, status=201)
        assert 'Written anyway' in titles(client)
    said = [r for r in caplog.records if r.name == 'sprig.cache' and 'cache unavailable' in r.getMessage()]
    assert len(said) == 1  # once per interval, not once per request


def test_fifty_concurrent_cold_requests_run_one_query(shop):
    with waitress_thread(shop.app, threads=50) as server:
        url = f'http://127.0.0.1:{server.effective_port}/api/v1/home/banners'

        def fetch() -> tuple:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return reply.status, reply.headers['X-Cache'], reply.read()
        with counting_queries() as statements:
            answers = together([fetch] * 50)
    assert len(answers) == 50 and {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert len([sql for sql in statements if 'FROM "banner"' in sql]) == 1
    assert sorted(x_cache for _, x_cache, _ in answers).count('miss') == 1


# With a real consumer process ------------------------------------------------------------------

@pytest.fixture(params=['sqlite', 'redis'])
def shared(request, tmp_path, spawn, unique):
    """The web app here and a huey_consumer process sharing database, queue and cache, on SQLite
    files or on Redis. Yields (client, start_consumer)."""
    env = {'SPRIG_CACHE_DOUBLE_DELETE_DELAY': '300'}
    if request.param == 'redis':
        url = request.getfixturevalue('redis_url')
        env |= {'SPRIG_QUEUE_URL': url, 'SPRIG_QUEUE_NAME': unique, 'SPRIG_CACHE_URL': url,
                'SPRIG_CACHE_PREFIX': request.getfixturevalue('redis_prefix')}
    client = make_shop(tmp_path, SPRIG_QUEUE_IMMEDIATE='false', **env)
    with database.connection_context():
        demo.seed()

    def start_consumer(refresh_interval: int):
        args = huey_consumer('-w', '2', '-k', 'thread', '-m', '1')
        return spawn(args, process_env(tmp_path, SPRIG_APP_BASE_URL=BASE, **env,
                                       SPRIG_BANNER_REFRESH_INTERVAL=str(refresh_interval)), 'consumer')
    yield client, start_consumer
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_a_stale_value_put_back_after_the_first_delete_is_removed_by_the_second(shared):
    client, start_consumer = shared
    consumer = start_consumer(refresh_interval=3600)  # no periodic rebuild to mend it instead
    admin = bearer(client, 'admin_1', 'admin password 1')
    wait_until(lambda: client.get('/api/v1/home/banners').headers['X-Cache'] == 'hit', 10,
               'no cached list', consumer.stderr)
    with database.connection_context():
        old = banners.visible(tasks.settings)  # a reader reads the old rows...
    client.patch_json('/api/v1/admin/banners/1', {'title': 'New title'}, headers=admin)  # the write, first delete
    cached.put(keys.BANNERS, old, ttl=300)  # ...and stores them after the first delete
    assert titles(client)[0] == 'Python from zero to web'  # stale, for now
    wait_until(lambda: titles(client)[0] == 'New title', 5, 'the second delete did not run', consumer.stderr)
    def second_delete() -> TaskRecord | None:
        with database.connection_context():
            return TaskRecord.get_or_none((TaskRecord.name == 'drop_cached') & (TaskRecord.state == 'succeeded'))
    second = wait_until(second_delete, 5, 'no record of the second delete', consumer.stderr)
    assert second.args == '{"keys": ["home:banners"], "namespaces": []}'
    assert (second.eta - second.created_at).total_seconds() == pytest.approx(0.3, abs=0.05)


def behind_the_apps_back(title: str) -> None:
    """A plain UPDATE, as another program would make it: nothing drops the cached list."""
    with database.connection_context():
        Banner.update(title=title).where(Banner.id == 1).execute()


def test_a_change_made_with_sql_is_served_within_the_refresh_interval(shared):
    client, start_consumer = shared
    consumer = start_consumer(refresh_interval=5)
    wait_until(lambda: client.get('/api/v1/home/banners').headers['X-Cache'] == 'hit', 10,
               'no cached list', consumer.stderr)
    behind_the_apps_back('Changed with SQL')
    changed_at = time.monotonic()
    wait_until(lambda: titles(client)[0] == 'Changed with SQL', 5 + 2, 'the rebuild did not catch up', consumer.stderr)
    assert time.monotonic() - changed_at <= 7
    # The rebuild on request, by the same consumer through the shared queue and cache.
    behind_the_apps_back('Rebuilt on request')
    admin = bearer(client, 'admin_1', 'admin password 1')
    task_id = client.post('/api/v1/admin/banners/rebuild', headers=admin, status=202).json['task_id']
    wait_until(lambda: client.get(f'/api/v1/tasks/{task_id}', headers=admin).json['result']['state'] == 'succeeded',
               10, 'the rebuild task did not succeed', consumer.stderr)
    reply = client.get('/api/v1/home/banners')
    assert reply.headers['X-Cache'] == 'hit' and reply.json['result'][0]['title'] == 'Rebuilt on request'
