"""Seckill: sales, presses and their results, the fast path, payment, cancellation, admin sales,
the database's own guards, and the payment timeout with a real consumer."""
import datetime
import threading
from decimal import Decimal

import peewee
import pytest
import webtest
from conftest import bearer, huey_consumer, make_settings, process_env, wait_until

import app as sprig_app
import tasks
from models import Order, SeckillItem, TaskRecord, User, database, utcnow
from sprig.cache.store import cache
from sprig.db.schema import create_tables
from sprig.shop import demo, orders, seckill
from sprig.shop.accounts import hash_password, save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

BASE = 'https://shop.example'
USERS = ['user_one', 'user_two', 'user_three']


def make_shop(tmp_path, **env) -> webtest.TestApp:
    """The app on a real SQLite queue that nothing drains until drain() runs it; demo data (sale 1:
    100 seats, on now), an admin and three users."""
    application = sprig_app.create_app(make_settings(tmp_path, SPRIG_APP_BASE_URL=BASE,
                                                     SPRIG_AUTH_LOGINS_PER_MINUTE='0', **env))
    create_tables()
    with database.connection_context():
        demo.seed()
        save_admin('admin_1', 'admin password 1')
        for n, name in enumerate(USERS):
            User.create(username=name, mobile=f'1380013800{n}', password_hash=hash_password(f'{name} password'))
    return webtest.TestApp(application)


@pytest.fixture
def shop(tmp_path):
    yield make_shop(tmp_path)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


@pytest.fixture
def people(shop) -> dict[str, dict]:
    return {'admin': bearer(shop, 'admin_1', 'admin password 1'),
            **{name: bearer(shop, name, f'{name} password') for name in USERS}}


def drain() -> None:
    """Run what is queued, in a thread of its own as a consumer's worker would."""
    def work():
        while (task := tasks.huey.dequeue()) is not None:
            tasks.huey.execute(task)
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    tasks.huey.writer.flush()


def new_sale(shop, admin: dict, stock: int, starts: int = -60, ends: int = 3600) -> int:
    """A sale of course 7 that started `starts` seconds from now (negative: ago)."""
    now = datetime.datetime.now(datetime.UTC)
    body = {'course_id': 7, 'price': '9.90', 'stock_total': stock,
            'starts_at': (now + datetime.timedelta(seconds=starts)).isoformat(),
            'ends_at': (now + datetime.timedelta(seconds=ends)).isoformat()}
    return shop.post_json('/api/v1/admin/seckill/items', body, headers=admin, status=201).json['result']['id']


def press(shop, who: dict, item_id: int, status: int = 202) -> dict:
    return shop.post_json('/api/v1/seckill', {'item_id': item_id}, headers=who, status=status).json


def result(shop, who: dict, task_id: str, status: int = 200) -> dict:
    return shop.get(f'/api/v1/seckill/result?task_id={task_id}', headers=who, status=status).json


def records() -> int:
    tasks.huey.writer.flush()  # what the writer thread would commit within 20 ms
    with database.connection_context():
        return TaskRecord.select().count()


def test_sales_are_listed_with_their_state_and_admins_create_them_carefully(shop, people):
    admin = people['admin']
    listed = shop.get('/api/v1/seckill/items').json['result']
    assert [(sale['id'], sale['state'], sale['stock_left'], sale['course']['name']) for sale in listed] == [
        (1, 'active', 100, 'Linux for developers')]
    upcoming = new_sale(shop, admin, 10, starts=3600, ends=7200)
    one = shop.get(f'/api/v1/seckill/items/{upcoming}').json['result']
    assert (one['state'], one['price'], one['stock_total']) == ('upcoming', '9.90', 10)
    assert one['starts_at'].endswith('+00:00')
    shop.get('/api/v1/seckill/items/999', status=404)
    bad = shop.post_json('/api/v1/admin/seckill/items', {
        'course_id': 0, 'price': '-1', 'stock_total': -1, 'starts_at': '2026-01-01T10:00:00',
        'ends_at': 'soon'}, headers=admin, status=400).json
    assert set(bad['errors']) == {'course_id', 'price', 'stock_total', 'starts_at', 'ends_at'}
    backwards = {'course_id': 7, 'price': '1', 'stock_total': 1, 'starts_at': '2026-01-02T00:00:00+08:00',
                 'ends_at': '2026-01-01T00:00:00+08:00'}
    shop.post_json('/api/v1/admin/seckill/items', backwards, headers=admin, status=400)
    missing = {**backwards, 'course_id': 999, 'ends_at': '2026-01-03T00:00:00+08:00'}
    assert shop.post_json('/api/v1/admin/seckill/items', missing, headers=admin, status=400).json['errors'] == {
        'course_id': 'no such course: 999'}
    shop.post_json('/api/v1/admin/seckill/items', missing, headers=people['user_one'], status=403)
    # The course page links to its sale.
    assert shop.get('/api/v1/courses/7').json['result']['seckill'] == {'id': 1, 'price': '29.90'}


def test_a_press_wins_once_and_only_its_user_sees_the_result(shop, people):
    one, two = people['user_one'], people['user_two']
    shop.post_json('/api/v1/seckill', {'item_id': 1}, status=401)
    press(shop, one, 999, status=404)
    press(shop, one, 'x', status=400)  # an item id is a number
    task_id = press(shop, one, 1)['task_id']
    assert result(shop, one, task_id) == {'code': 102, 'msg': 'queued', 'task_id': task_id}
    result(shop, two, task_id, status=404)  # another user's submission is unknown to them
    result(shop, one, 'no-such-task', status=404)
    result(shop, one, '', status=400)
    drain()
    won = result(shop, one, task_id)
    assert won['code'] == 100 and won['order_id'] >= 1
    before = records()
    again = press(shop, one, 1, status=200)
    assert again == {'code': 101, 'msg': 'you already hold an order for this sale'}
    assert records() == before  # answered without the queue
    orders = shop.get('/api/v1/orders', headers=one).json['result']
    assert [(o['id'], o['item_id'], o['status'], o['price']) for o in orders] == [
        (won['order_id'], 1, 'pending_payment', '29.90')]
    assert shop.get('/api/v1/orders', headers=two).json['result'] == []
    assert shop.get('/api/v1/seckill/items/1').json['result']['stock_left'] == 99


def test_sold_out_is_answered_at_once_and_outside_the_window_is_400(shop, people):
    admin, one, two = people['admin'], people['user_one'], people['user_two']
    item = new_sale(shop, admin, 1)
    press(shop, one, item)
    before = records()
    assert press(shop, two, item, status=200) == {'code': 101, 'msg': 'sold out'}  # the counter says so
    assert records() == before
    assert [task.name for task in tasks.huey.pending()].count('create_order') == 1
    drain()
    assert shop.get(f'/api/v1/seckill/items/{item}').json['result']['state'] == 'sold_out'
    later = new_sale(shop, admin, 5, starts=3600, ends=7200)
    assert press(shop, one, later, status=400)['msg'] == 'the sale has not started yet'
    over = new_sale(shop, admin, 5, starts=-7200, ends=-3600)
    assert press(shop, one, over, status=400)['msg'] == 'the sale has ended'


def test_payment_rules(shop, people):
    one, two = people['user_one'], people['user_two']
    press(shop, one, 1)
    press(shop, two, 1)
    drain()
    first, second = (shop.get('/api/v1/orders', headers=who).json['result'][0]['id'] for who in (one, two))
    shop.post(f'/api/v1/orders/{first}/pay', headers=two, status=404)  # not theirs
    paid = shop.post(f'/api/v1/orders/{first}/pay', headers=one).json['result']
    assert paid['status'] == 'paid' and paid['paid_at']
    assert shop.post(f'/api/v1/orders/{first}/pay', headers=one, status=400).json['msg'] == 'this order is paid'
    with database.connection_context():
        Order.update(expires_at=utcnow() - datetime.timedelta(seconds=1)).where(Order.id == second).execute()
    assert shop.post(f'/api/v1/orders/{second}/pay', headers=two, status=400).json['msg'] == 'this order has expired'
    with database.connection_context():
        assert orders.cancel_if_unpaid(second) is True
        assert orders.cancel_if_unpaid(second) is False  # once
        assert orders.cancel_if_unpaid(first) is False  # paid orders stay
    assert shop.post(f'/api/v1/orders/{second}/pay', headers=two, status=400).json['msg'] == 'this order is cancelled'
    shop.post('/api/v1/orders/999/pay', headers=one, status=404)


def test_a_cancelled_order_puts_its_unit_back_on_sale(shop, people):
    admin, one, two = people['admin'], people['user_one'], people['user_two']
    item = new_sale(shop, admin, 1)
    press(shop, one, item)
    drain()
    press(shop, two, item, status=200)  # sold out
    order = shop.get('/api/v1/orders', headers=one).json['result'][0]['id']
    with database.connection_context():
        orders.cancel_if_unpaid(order)
        assert SeckillItem.get_by_id(item).stock_left == 1
    assert cache.get(seckill.counter_key(item)) == 1
    task_id = press(shop, two, item)['task_id']
    drain()
    assert result(shop, two, task_id)['code'] == 100
    press(shop, one, item, status=200)  # sold out again; the first user's marker went with the order


def test_unpaid_orders_past_their_time_are_cancelled_by_the_sweep_too(shop, people):
    """The safety net for an order whose own cancellation could not be queued."""
    item = new_sale(shop, people['admin'], 1)
    press(shop, people['user_one'], item)
    drain()
    with database.connection_context():
        Order.update(expires_at=utcnow() - datetime.timedelta(seconds=1)).execute()
        assert tasks.cancel_expired_orders.call_local() == 1
        assert Order.get().status == 'cancelled' and SeckillItem.get_by_id(item).stock_left == 1
        assert tasks.cancel_expired_orders.call_local() == 0


def test_the_order_task_runs_twice_and_creates_one_order(shop, people):
    with database.connection_context():
        user = User.get(User.username == 'user_one')
        first = seckill.place_order(user.id, 1, 'task-a', 60)
        second = seckill.place_order(user.id, 1, 'task-a', 60)
        assert first == second == {'outcome': 'won', 'order_id': first['order_id']}
        assert Order.select().count() == 1 and SeckillItem.get_by_id(1).stock_left == 99
        # Another submission of the same user: the database refuses a second live order.
        assert seckill.place_order(user.id, 1, 'task-b', 60) == {'outcome': 'already_bought'}
        assert SeckillItem.get_by_id(1).stock_left == 99


def test_the_database_itself_forbids_overselling_and_a_second_live_order(shop):
    with database.connection_context():
        user = User.get(User.username == 'user_one')
        order = Order.create(user=user, item=1, task_id='a', price=Decimal('1'), expires_at=utcnow())
        with pytest.raises(peewee.IntegrityError), database.atomic():
            Order.create(user=user, item=1, task_id='b', price=Decimal('1'), expires_at=utcnow())
        Order.update(status='cancelled', live=None).where(Order.id == order.id).execute()
        Order.create(user=user, item=1, task_id='c', price=Decimal('1'), expires_at=utcnow())  # now allowed
        with pytest.raises(peewee.IntegrityError), database.atomic():
            SeckillItem.update(stock_left=-1).where(SeckillItem.id == 1).execute()


def test_changing_stock_total_moves_stock_left_and_the_counter(shop, people):
    admin, one = people['admin'], people['user_one']
    item = new_sale(shop, admin, 2)
    press(shop, one, item)
    drain()
    changed = shop.patch_json(f'/api/v1/admin/seckill/items/{item}', {'stock_total': 5}, headers=admin).json['result']
    assert (changed['stock_total'], changed['stock_left']) == (5, 4)
    assert cache.get(seckill.counter_key(item)) == 4
    refused = shop.patch_json(f'/api/v1/admin/seckill/items/{item}', {'stock_total': 0}, headers=admin, status=400)
    assert refused.json['errors'] == {'stock_total': 'at least 1 were sold'}
    shop.patch_json(f'/api/v1/admin/seckill/items/{item}', {'price': '1.00'}, headers=admin)
    assert shop.get(f'/api/v1/seckill/items/{item}').json['result']['price'] == '1.00'
    shop.patch_json(f'/api/v1/admin/seckill/items/{item}', {}, headers=admin, status=400)
    shop.patch_json('/api/v1/admin/seckill/items/999', {'price': '1'}, headers=admin, status=404)


def test_unpaid_orders_are_cancelled_after_the_timeout_and_sold_again(tmp_path, spawn):
    env = {'SPRIG_SECKILL_PAYMENT_TIMEOUT': '2'}
    shop = make_shop(tmp_path, **env)
    try:
        consumer = spawn(huey_consumer('-w', '2', '-k', 'thread', '-m', '1'), process_env(tmp_path, **env), 'consumer')
        admin = bearer(shop, 'admin_1', 'admin password 1')
        one, two, three = (bearer(shop, name, f'{name} password') for name in USERS)
        item = new_sale(shop, admin, 2)
        def win(who: dict) -> int:
            task_id = press(shop, who, item)['task_id']
            answer = wait_until(lambda: (found := result(shop, who, task_id))['code'] == 100 and found, 10,
                                'no win', consumer.stderr)
            return answer['order_id']
        won = {'one': win(one), 'two': win(two)}
        shop.post(f'/api/v1/orders/{won["one"]}/pay', headers=one)
        assert press(shop, three, item, status=200)['msg'] == 'sold out'

        def unpaid_cancelled() -> bool:
            with database.connection_context():
                return Order.get_by_id(won['two']).status == 'cancelled'
        wait_until(unpaid_cancelled, 10, 'the unpaid order was not cancelled', consumer.stderr)
        with database.connection_context():
            assert Order.get_by_id(won['one']).status == 'paid'
            assert SeckillItem.get_by_id(item).stock_left == 1
        task_id = press(shop, three, item)['task_id']  # its seat is on sale again
        wait_until(lambda: result(shop, three, task_id)['code'] == 100, 10, 'not sold again', consumer.stderr)
    finally:
        tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_a_press_whose_task_is_revoked_gives_its_seat_back(shop, people):
    admin, one = people['admin'], people['user_one']
    item = new_sale(shop, admin, 1)
    task_id = press(shop, one, item)['task_id']
    tasks.huey.writer.flush()
    shop.post(f'/api/v1/admin/tasks/{task_id}/revoke', headers=admin)
    assert cache.get(seckill.counter_key(item)) == 0  # still claimed until a consumer drops the task
    drain()  # the consumer meets the revoked task: it will never run
    assert result(shop, one, task_id)['code'] == 104
    assert cache.get(seckill.counter_key(item)) == 1
    assert press(shop, one, item, status=202)['task_id']  # not "you already hold one"
