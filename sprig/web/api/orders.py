"""Orders and courses of one's own: the orders, paying them through the payment provider (and the
provider's signed notices), buying a course or starting a free one, my courses."""
from typing import Annotated

from peewee import ModelSelect
from pydantic import Field

import tasks
from models import Course, Order, User
from sprig.settings import Settings
from sprig.shop import orders, payments
from sprig.web.envelope import ApiError, ok
from sprig.web.inputs import Input
from sprig.web.listing import ListQuery, api_page, paged, searched, sorted_by
from sprig.web.routing import Routes, get_or_404

ROUTES = Routes()


class PaymentNotice(Input):
    order_id: int
    amount: Annotated[str, Field(max_length=20)]
    transaction: Annotated[str, Field(min_length=1, max_length=100)]
    sent_at: int
    signature: Annotated[str, Field(max_length=128)]


def own_order(order_id: int, user: User) -> Order:
    return get_or_404(Order.select(), Order.id == order_id, Order.user == user, missing=f'no order {order_id}')


def provider_or_503(settings: Settings) -> payments.Simulated:
    found = payments.provider(settings)
    if found is None:
        raise ApiError(503, 'payments are not set up on this shop ([payments] provider)', component='payments')
    return found


def refused(exc: Exception) -> ApiError:
    return ApiError(400, str(exc))


def course_or_404(course_id: int) -> Course:
    return get_or_404(Course.shown(), Course.id == course_id, Course.status == 'online',
                      missing=f'no course {course_id}')


ORDER_SORTS = {'id': Order.id, 'created_at': Order.created_at, 'price': Order.price, 'status': Order.status}


def staff_view(order: Order) -> dict:
    return order.public() | {'user': {'id': order.user_id, 'username': order.user.username}}


def orders_of(query: ListQuery) -> tuple[ModelSelect, str]:
    """The orders a staff list shows: filters status, item (a sale's id) and user (an id); q
    searches the buyer's username and the task id; sorted. Also the sort applied."""
    found = searched(Order.select(Order, User).join(User), (User.username, Order.task_id), query.q)
    if query.filter('status') in Order.STATUSES:
        found = found.where(Order.status == query.filter('status'))
    for name in ('item', 'user'):
        if query.filter(name).isdigit():
            found = found.where(getattr(Order, name) == int(query.filter(name)))
    return sorted_by(found, query.sort, ORDER_SORTS, '-id')


def any_order(order_id: int) -> Order:
    return get_or_404(Order.select(), Order.id == order_id, missing=f'no order {order_id}')


@ROUTES.get('/api/v1/admin/orders', 'Orders: filters status, item, user; search q; sort; page', auth='admin',
            query=ListQuery)
def list_orders(query: ListQuery) -> dict:
    return ok(**api_page(paged(orders_of(query)[0], query.page), staff_view))


@ROUTES.post('/api/v1/admin/orders/<order_id:int>/cancel', 'Cancel a pending order: a sale seat goes back on sale',
             auth='admin', statuses=(404,))
def cancel_order(order_id: int, user: User) -> dict:
    order = any_order(order_id)
    if not orders.cancel_if_unpaid(order.id, user):
        raise ApiError(400, f'only a pending order can be cancelled; this one is {order.status.replace("_", " ")}')
    return ok('cancelled', result=any_order(order_id).public())


@ROUTES.post('/api/v1/admin/orders/<order_id:int>/refund', 'Mark a paid order refunded: the buyer leaves the course',
             auth='admin', statuses=(404,))
def refund_order(order_id: int, user: User) -> dict:
    order = any_order(order_id)
    if not orders.refund(order, user):
        raise ApiError(400, f'only a paid order can be refunded; this one is {order.status.replace("_", " ")}')
    return ok('refunded', result=any_order(order_id).public())


@ROUTES.get('/api/v1/orders', "The signed-in user's orders", auth='user')
def my_orders(user: User) -> dict:
    found = Order.select().where(Order.user == user).order_by(Order.created_at.desc(), Order.id.desc())
    return ok(result=[order.public() for order in found])


@ROUTES.post('/api/v1/orders/<order_id:int>/pay', 'Pay an order at once: the simulated provider only', auth='user',
             statuses=(400, 404, 409))
def pay(order_id: int, user: User, settings: Settings) -> dict:
    order = own_order(order_id, user)
    provider = provider_or_503(settings)
    try:  # the simulated provider's checkout, done at once: its signed notice, believed as any
        payments.accept(provider.verify(provider.notice(order)))
    except payments.Refused as exc:
        raise refused(exc) from None
    return ok('paid', result=Order.get_by_id(order_id).public())


@ROUTES.post('/api/v1/orders/<order_id:int>/checkout', "Where to pay an order: the provider's checkout",
             auth='user', statuses=(400, 404))
def checkout(order_id: int, user: User, settings: Settings) -> dict:
    order = own_order(order_id, user)
    if order.status != 'pending_payment':
        raise ApiError(400, f'this order is {order.status.replace("_", " ")}')
    provider = provider_or_503(settings)
    return ok(redirect=provider.checkout(order, back=f'/pay/return?order={order.id}'), provider=provider.name)


@ROUTES.post('/api/v1/payments/notify', "The payment provider's signed notice that an order was paid",
             body=PaymentNotice, statuses=(400,))
def payment_notice(body: PaymentNotice, settings: Settings) -> dict:
    provider = provider_or_503(settings)
    try:
        order = payments.accept(provider.verify(body.model_dump()))
    except payments.Refused as exc:
        raise refused(exc) from None
    return ok('accepted', result=order.public())


@ROUTES.post('/api/v1/courses/<course_id:int>/buy', 'Order a course at its price (pay it within the time limit)',
             auth='user', statuses=(201, 400, 404))
def buy_course(course_id: int, user: User, settings: Settings) -> dict:
    course = course_or_404(course_id)
    try:
        order = orders.buy(user.id, course, settings.seckill.payment_timeout)
    except orders.Refused as exc:
        raise refused(exc) from None
    tasks.cancel_unpaid_order.schedule((order.id,), delay=settings.seckill.payment_timeout)
    return ok('ordered', status=201, result=order.public())


@ROUTES.post('/api/v1/courses/<course_id:int>/start', 'Start a free course (again: nothing changes)', auth='user',
             statuses=(400, 404))
def start_course(course_id: int, user: User) -> dict:
    try:
        orders.start_free(user.id, course_or_404(course_id))
    except orders.Refused as exc:
        raise refused(exc) from None
    return ok('started')


@ROUTES.get('/api/v1/user/courses', 'The courses the signed-in user follows', auth='user')
def my_courses(user: User) -> dict:
    return ok(result=[{'id': row['id'], 'name': row['name'], 'kind': row['kind'], 'since': row['created']}
                      for row in orders.courses_of(user.id)])
