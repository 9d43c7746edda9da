"""Buying a course at its price and starting a free one, paying through the payment provider (its
signed notices: forged, replayed, too old, valid), my orders and my courses, the account."""
import time

import pytest
from conftest import bearer, make_settings
from test_seckill import USERS, drain, make_shop, press

import tasks
from models import Enrolment, Order, Payment, database
from sprig.shop import payments

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)
PAID_COURSE, FREE_COURSE = 5, 1  # the demo catalogue's (399.00 and free)


@pytest.fixture
def shop(tmp_path):
    yield make_shop(tmp_path)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


@pytest.fixture
def buyer(shop) -> dict:
    return bearer(shop, USERS[0], f'{USERS[0]} password')


def buy(shop, buyer, course: int = PAID_COURSE, status: int = 201) -> dict:
    return shop.post_json(f'/api/v1/courses/{course}/buy', {}, headers=buyer, status=status).json


def signed_notice(order_id: int, **changes) -> dict:
    """The simulated provider's notice for the order, as its server would post it."""
    with database.connection_context():
        notice = payments.provider(tasks.settings).notice(Order.get_by_id(order_id))
    return notice | changes


def test_a_paid_course_is_bought_paid_by_a_signed_notice_and_becomes_mine(shop, buyer):
    order = buy(shop, buyer)['result']
    assert (order['status'], order['price'], order['course_id']) == ('pending_payment', '399.00', PAID_COURSE)
    assert 'already have an order' in buy(shop, buyer, status=400)['msg']
    where = shop.post_json(f'/api/v1/orders/{order["id"]}/checkout', {}, headers=buyer).json
    assert where['redirect'].startswith(f'/pay/simulated/{order["id"]}?back=') and where['provider'] == 'simulated'
    notice = signed_notice(order['id'])
    forged = shop.post_json('/api/v1/payments/notify', notice | {'amount': '0.01'}, status=400).json
    assert forged['msg'] == 'the notice is not signed by the payment provider'
    stale = signed_notice(order['id'], sent_at=int(time.time()) - 3600)
    stale['signature'] = payments.provider(tasks.settings).sign({k: stale[k] for k in stale if k != 'signature'})
    assert shop.post_json('/api/v1/payments/notify', stale, status=400).json['msg'] == 'the notice is too old'
    assert shop.post_json('/api/v1/payments/notify', notice).json['result']['status'] == 'paid'
    assert shop.post_json('/api/v1/payments/notify', notice).json['result']['status'] == 'paid'  # replayed: once
    with database.connection_context():
        assert Payment.select().count() == 1
        assert Enrolment.select().where(Enrolment.course == PAID_COURSE).count() == 1
    mine = shop.get('/api/v1/user/courses', headers=buyer).json['result']
    assert [course['id'] for course in mine] == [PAID_COURSE]
    assert buy(shop, buyer, status=400)['msg'] == 'this course is already yours'


def test_an_unpaid_course_order_is_cancelled_in_time(shop, buyer):
    order = buy(shop, buyer)['result']
    with database.connection_context():
        Order.update(expires_at=Order.created_at).execute()  # its time ran out
    tasks.cancel_expired_orders.call_local()
    assert shop.get('/api/v1/orders', headers=buyer).json['result'][0]['status'] == 'cancelled'
    assert buy(shop, buyer)['result']['id'] != order['id']  # a new order may be made


def test_a_free_course_is_started_once_and_a_paid_one_is_not(shop, buyer):
    for _ in range(2):
        assert shop.post_json(f'/api/v1/courses/{FREE_COURSE}/start', {}, headers=buyer).json['msg'] == 'started'
    assert 'buy it first' in shop.post_json(f'/api/v1/courses/{PAID_COURSE}/start', {}, headers=buyer,
                                            status=400).json['msg']
    assert 'is free' in buy(shop, buyer, FREE_COURSE, status=400)['msg']
    assert [c['id'] for c in shop.get('/api/v1/user/courses', headers=buyer).json['result']] == [FREE_COURSE]


def test_a_seat_won_and_paid_makes_the_course_mine(shop, buyer):
    task = press(shop, buyer, 1)['task_id']
    drain()
    order = shop.get(f'/api/v1/seckill/result?task_id={task}', headers=buyer).json['order_id']
    assert shop.post_json(f'/api/v1/orders/{order}/pay', {}, headers=buyer).json['result']['status'] == 'paid'
    assert [c['id'] for c in shop.get('/api/v1/user/courses', headers=buyer).json['result']] == [7]


def test_a_password_change_signs_out_every_other_session(shop):
    first = bearer(shop, USERS[1], f'{USERS[1]} password')
    second = bearer(shop, USERS[1], f'{USERS[1]} password')
    wrong = shop.post_json('/api/v1/user/password', {'password': 'nope', 'new_password': 'new password 1',
                                                     'new_password2': 'new password 1'}, headers=first, status=400)
    assert wrong.json['errors'] == {'password': 'this is not your current password'}
    changed = shop.post_json('/api/v1/user/password', {'password': f'{USERS[1]} password',
                                                       'new_password': 'new password 1',
                                                       'new_password2': 'new password 1'}, headers=first).json
    shop.get('/api/v1/user/me', headers=second, status=401)
    fresh = {'Authorization': f'Bearer {changed["token"]}'}
    assert shop.get('/api/v1/user/me', headers=fresh).json['result']['username'] == USERS[1]
    shop.post_json('/api/v1/user/logout/all', {}, headers=fresh)
    shop.get('/api/v1/user/me', headers=fresh, status=401)
