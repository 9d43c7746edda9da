"""The staff's JSON routes: roles (editor and admin), accounts disabled, promoted and given new
passwords or reset codes, orders cancelled and refunded, bulk actions, and the audit log."""
import datetime
import json
from decimal import Decimal

import pytest
import webtest
from conftest import bearer, make_settings

import app as sprig_app
from models import AuditEntry, Course, Enrolment, Order, SeckillItem, User, database, utcnow
from sprig.db.schema import create_tables
from sprig.shop import demo, orders
from sprig.shop.accounts import hash_password, save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

MOBILE = '13800138005'


@pytest.fixture
def shop(tmp_path) -> webtest.TestApp:
    settings = make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true', SPRIG_SMS_OUTBOX=str(tmp_path / 'outbox.jsonl'))
    client = webtest.TestApp(sprig_app.create_app(settings), extra_environ={'REMOTE_ADDR': '10.0.0.2'})
    create_tables()
    with database.connection_context():
        demo.seed()
        save_admin('admin_1', 'admin password 1')
        save_admin('editor_1', 'editor password 1', role='editor')
        User.create(username='buyer_01', mobile=MOBILE, password_hash=hash_password('buyer password 1'))
    return client


def sign_in(client, name: str) -> dict:
    return bearer(client, name, {'admin_1': 'admin password 1', 'editor_1': 'editor password 1',
                                 'buyer_01': 'buyer password 1'}[name])


def buyer_id() -> int:
    with database.connection_context():
        return User.get(User.username == 'buyer_01').id


def test_an_editor_runs_the_content_but_not_the_accounts(shop):
    editor, buyer = sign_in(shop, 'editor_1'), sign_in(shop, 'buyer_01')
    shop.post_json('/api/v1/admin/banners', {'title': 'By the editor', 'image': 'static/banners/a.svg'},
                   headers=editor, status=201)
    shop.get('/api/v1/admin/courses', headers=editor)
    for path in ('/api/v1/admin/users', '/api/v1/admin/orders', '/api/v1/admin/audit', '/api/v1/admin/tasks'):
        assert shop.get(path, headers=editor, status=403).json['msg'] == 'admins only'
    assert shop.get('/api/v1/admin/banners', headers=buyer, status=403).json['msg'] == 'editors and admins only'
    shop.get('/api/v1/admin/banners', status=401)


def test_a_disabled_account_is_signed_out_at_once_and_enabled_again(shop):
    admin, buyer = sign_in(shop, 'admin_1'), sign_in(shop, 'buyer_01')
    shop.get('/api/v1/user/me', headers=buyer)
    answer = shop.patch_json(f'/api/v1/admin/users/{buyer_id()}', {'is_active': False}, headers=admin).json
    assert answer['changed'] == ['is_active'] and answer['result']['is_active'] is False
    shop.get('/api/v1/user/me', headers=buyer, status=401)
    shop.post_json('/api/v1/user/login', {'username': 'buyer_01', 'password': 'buyer password 1'}, status=401)
    shop.patch_json(f'/api/v1/admin/users/{buyer_id()}', {'is_active': True}, headers=admin)
    sign_in(shop, 'buyer_01')
    actions = [entry['action'] for entry in shop.get(f'/api/v1/admin/users/{buyer_id()}', headers=admin).json['audit']]
    assert actions == ['enable', 'disable']


def test_promotion_and_a_new_password(shop):
    admin, buyer = sign_in(shop, 'admin_1'), sign_in(shop, 'buyer_01')
    shop.patch_json(f'/api/v1/admin/users/{buyer_id()}', {'role': 'editor', 'password': 'a new password 9'},
                    headers=admin)
    shop.get('/api/v1/user/me', headers=buyer, status=401)  # a new password signs every session out
    promoted = bearer(shop, 'buyer_01', 'a new password 9')
    assert shop.get('/api/v1/user/me', headers=promoted).json['result']['role'] == 'editor'
    shop.get('/api/v1/admin/courses', headers=promoted)
    entry = shop.get('/api/v1/admin/audit?kind=user', headers=admin).json['result'][0]
    assert entry['changes'] == {'role': ['user', 'editor'], 'password_hash': ['***', '***']}


def test_an_admin_cannot_lock_themselves_out(shop):
    admin = sign_in(shop, 'admin_1')
    with database.connection_context():
        own = User.get(User.username == 'admin_1').id
    for change in ({'role': 'editor'}, {'is_active': False}):
        answer = shop.patch_json(f'/api/v1/admin/users/{own}', change, headers=admin, status=400).json
        assert 'your own' in answer['msg']
    assert shop.patch_json(f'/api/v1/admin/users/{own}', {}, headers=admin, status=400).json['code'] == 400
    shop.patch_json('/api/v1/admin/users/99999', {'role': 'admin'}, headers=admin, status=404)


def test_a_reset_code_by_sms_sets_a_new_password(shop, tmp_path):
    admin = sign_in(shop, 'admin_1')
    answer = shop.post(f'/api/v1/admin/users/{buyer_id()}/reset-code', headers=admin, status=202).json
    assert '138****8005' in answer['msg']
    sent = [json.loads(line) for line in (tmp_path / 'outbox.jsonl').read_text().splitlines()][-1]
    assert sent['scene'] == 'reset' and sent['mobile'] == MOBILE
    body = {'mobile': MOBILE, 'sms_code': sent['code'], 'new_password': 'reset password 1',
            'new_password2': 'reset password 1'}
    shop.post_json('/api/v1/user/password/reset', body | {'sms_code': '000000' if sent['code'] != '000000'
                                                           else '111111'}, status=400)
    shop.post_json('/api/v1/user/password/reset', body)
    shop.post_json('/api/v1/user/password/reset', body, status=400)  # single use
    bearer(shop, 'buyer_01', 'reset password 1')


def sale_order(status: str) -> Order:
    """A buyer's order of a sale with one unit left of two."""
    with database.connection_context():
        now = utcnow()
        item = SeckillItem.create(course=Course.select().first(), price=Decimal('9.90'), stock_total=2,
                                  stock_left=1, starts_at=now, ends_at=now + datetime.timedelta(hours=1))
        order = Order.create(user=buyer_id(), item=item, task_id=f'task-{status}', status=status, price=item.price,
                             expires_at=now + datetime.timedelta(minutes=15))
        if status == 'paid':
            orders.enrol(order.user_id, item.course_id)
        return order


def test_a_pending_order_cancelled_gives_its_unit_back(shop):
    admin, order = sign_in(shop, 'admin_1'), sale_order('pending_payment')
    listed = shop.get(f'/api/v1/admin/orders?status=pending_payment&item={order.item_id}', headers=admin).json
    assert [row['id'] for row in listed['result']] == [order.id]
    assert listed['result'][0]['user']['username'] == 'buyer_01'
    assert shop.post(f'/api/v1/admin/orders/{order.id}/cancel', headers=admin).json['result']['status'] == 'cancelled'
    with database.connection_context():
        assert SeckillItem.get_by_id(order.item_id).stock_left == 2
    assert 'only a pending order' in shop.post(f'/api/v1/admin/orders/{order.id}/cancel', headers=admin,
                                               status=400).json['msg']
    shop.post(f'/api/v1/admin/orders/{order.id}/refund', headers=admin, status=400)


def test_a_paid_order_refunded_ends_the_enrolment(shop):
    admin, order = sign_in(shop, 'admin_1'), sale_order('paid')
    assert shop.post(f'/api/v1/admin/orders/{order.id}/refund', headers=admin).json['result']['status'] == 'refunded'
    with database.connection_context():
        assert not Enrolment.select().where(Enrolment.user == order.user_id).exists()
        entry = AuditEntry.get((AuditEntry.kind == 'order') & (AuditEntry.row_id == order.id))
        assert (entry.action, entry.actor_name) == ('refund', 'admin_1')


def test_bulk_hide_delete_and_restore_with_their_audit(shop):
    editor, admin = sign_in(shop, 'editor_1'), sign_in(shop, 'admin_1')
    assert len(shop.get('/api/v1/home/banners').json['result']) == 3
    answer = shop.post_json('/api/v1/admin/banners/bulk', {'ids': [1, 2], 'action': 'hide'}, headers=editor).json
    assert answer['changed'] == 2 and len(shop.get('/api/v1/home/banners').json['result']) == 1
    assert shop.post_json('/api/v1/admin/banners/bulk', {'ids': [1, 2], 'action': 'hide'},
                          headers=editor).json['changed'] == 0  # nothing to change: nothing audited
    shop.post_json('/api/v1/admin/courses/bulk', {'ids': [1], 'action': 'delete'}, headers=editor)
    shop.get('/api/v1/courses/1', status=404)
    shop.post_json('/api/v1/admin/courses/bulk', {'ids': [1], 'action': 'restore'}, headers=editor)
    shop.get('/api/v1/courses/1')
    shop.post_json('/api/v1/admin/courses/bulk', {'ids': [1], 'action': 'burn'}, headers=editor, status=400)
    log = shop.get('/api/v1/admin/audit', headers=admin).json
    assert [(entry['action'], entry['kind'], entry['row_id']) for entry in log['result'][:4]] == [
        ('restore', 'course', 1), ('delete', 'course', 1), ('hide', 'banner', 2), ('hide', 'banner', 1)]
    assert log['result'][2]['changes'] == {'is_show': [True, False]} and log['result'][2]['actor'] == 'editor_1'


def test_a_change_is_audited_with_its_fields_before_and_after(shop):
    editor, admin = sign_in(shop, 'editor_1'), sign_in(shop, 'admin_1')
    shop.patch_json('/api/v1/admin/banners/1', {'title': 'Renamed', 'orders': 1}, headers=editor)
    entry = shop.get('/api/v1/admin/audit?kind=banner&row_id=1', headers=admin).json['result'][0]
    assert entry['action'] == 'change' and entry['changes']['title'][1] == 'Renamed'
    assert set(entry['changes']) == {'title'} or set(entry['changes']) == {'title', 'orders'}
    shop.post_json('/api/v1/admin/seckill/items', {
        'course_id': 1, 'price': '1.00', 'stock_total': 3, 'starts_at': '2026-01-01T00:00:00+00:00',
        'ends_at': '2027-01-01T00:00:00+00:00'}, headers=editor, status=201)
    sale = shop.get('/api/v1/admin/audit?kind=seckillitem', headers=admin).json['result'][0]
    assert sale['action'] == 'create' and sale['changes']['stock_total'] == [None, 3]


def test_users_are_searched_filtered_and_paged(shop):
    admin = sign_in(shop, 'admin_1')
    assert [user['username'] for user in shop.get('/api/v1/admin/users?q=BUYER', headers=admin).json['result']] == [
        'buyer_01']
    staff = shop.get('/api/v1/admin/users?role=editor', headers=admin).json
    assert staff['count'] == 1 and staff['result'][0]['username'] == 'editor_1'
    assert shop.get('/api/v1/admin/users?sort=username&page=9', headers=admin).json['page'] == 1  # the last page
    assert shop.get('/api/v1/admin/users?q=' + MOBILE[-4:], headers=admin).json['count'] == 1
