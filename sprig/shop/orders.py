"""Orders: a flash-sale seat won, or a course bought at its price; their payment, their cancellation
when unpaid in time, and the enrolments they lead to (with the free courses started).

An order waits `[seckill] payment_timeout` seconds for payment; a task cancels it then, and a
cancelled sale seat goes back on sale. A paid order enrols its buyer in the course.
"""
import datetime
import secrets

from peewee import IntegrityError

from models import Course, Enrolment, Order, SeckillItem, User, database, utcnow
from sprig.shop import audit, seckill


class Refused(Exception):
    """The order or enrolment cannot be made or paid; str() says why, in words for the buyer."""


def course_of(order: Order) -> int:
    """The course an order is for: its own, or its sale's."""
    return order.course_id or SeckillItem.get_by_id(order.item_id).course_id


def enrol(user_id: int, course_id: int) -> Enrolment:
    """The user follows the course (again: nothing changes)."""
    Enrolment.insert(user=user_id, course=course_id).on_conflict_ignore().execute()
    return Enrolment.get((Enrolment.user == user_id) & (Enrolment.course == course_id))


def start_free(user_id: int, course: Course) -> Enrolment:
    """:raise Refused: the course has a price (buy it)."""
    if course.price > 0:
        raise Refused(f'this course costs {course.price:.2f}: buy it first')
    return enrol(user_id, course.id)


def buy(user_id: int, course: Course, payment_timeout: int) -> Order:
    """An order of the course at its price, waiting payment_timeout seconds.

    :raise Refused: free, already the user's, or an order of it is already waiting.
    """
    if course.price <= 0:
        raise Refused('this course is free: start it')
    if Enrolment.select().where((Enrolment.user == user_id) & (Enrolment.course == course.id)).exists():
        raise Refused('this course is already yours')
    try:
        with database.atomic():
            return Order.create(user=user_id, course=course.id, task_id=f'buy-{secrets.token_hex(16)}',
                                price=course.price,
                                expires_at=utcnow() + datetime.timedelta(seconds=payment_timeout))
    except IntegrityError:  # the unique live order per user and course
        raise Refused('you already have an order of this course waiting for payment: pay it in My orders') from None


def pay(order: Order) -> str | None:
    """Mark a pending, unexpired order paid and enrol its buyer; otherwise say why not."""
    if order.status != 'pending_payment':
        return f'this order is {order.status.replace("_", " ")}'
    now = utcnow()
    with database.atomic():
        paid = (Order.update(status='paid', paid_at=now)
                .where((Order.id == order.id) & (Order.status == 'pending_payment') & (Order.expires_at > now))
                .execute())
        if paid:
            enrol(order.user_id, course_of(order))
    return None if paid else 'this order has expired'


def cancel_if_unpaid(order_id: int, actor: User | None = None) -> bool:
    """Cancel a pending order, and put a sale's unit back on sale; False if it was paid or cancelled.
    actor: the staff member who cancelled it (audited), or None for the payment timeout."""
    with database.atomic():
        order = Order.get_or_none(Order.id == order_id)
        cancelled = order is not None and (
            Order.update(status='cancelled', live=None, cancelled_at=utcnow())
            .where((Order.id == order_id) & (Order.status == 'pending_payment')).execute())
        if cancelled and order.item_id:
            SeckillItem.update(stock_left=SeckillItem.stock_left + 1).where(SeckillItem.id == order.item_id).execute()
        if cancelled:
            audit.record(actor, 'cancel', order, {'status': ['pending_payment', 'cancelled']})
    if cancelled and order.item_id:
        seckill.release(order.item_id, order.user_id)
    return bool(cancelled)


def refund(order: Order, actor: User) -> bool:
    """Mark a paid order refunded (the money goes back through the provider, outside the shop):
    the buyer no longer follows the course and may buy it again. False if it was not paid."""
    with database.atomic():
        refunded = (Order.update(status='refunded', live=None)
                    .where((Order.id == order.id) & (Order.status == 'paid')).execute())
        if refunded:
            Enrolment.delete().where((Enrolment.user == order.user_id)
                                     & (Enrolment.course == course_of(order))).execute()
            audit.record(actor, 'refund', order, {'status': ['paid', 'refunded']})
    return bool(refunded)


def cancel_expired(limit: int = 500) -> int:
    """Cancel unpaid orders whose time ran out (any that cancel_unpaid_order missed)."""
    due = (Order.select(Order.id).where((Order.status == 'pending_payment') & (Order.expires_at <= utcnow()))
           .order_by(Order.expires_at).limit(limit).tuples())
    # Read all first: a SELECT still open would make SQLite refuse each cancellation's BEGIN
    # IMMEDIATE ("database is locked") whenever another connection committed meanwhile.
    return sum(cancel_if_unpaid(order_id) for order_id in [row[0] for row in due])


def orders_of(user_id: int) -> list[dict]:
    """The user's orders, newest first, each with what it is for: the course's name and page."""
    found = list(Order.select().where(Order.user == user_id).order_by(Order.created_at.desc(), Order.id.desc()))
    sales = {item.id: item.course_id for item in
             SeckillItem.select(SeckillItem.id, SeckillItem.course).where(
                 SeckillItem.id.in_([order.item_id for order in found if order.item_id]))}
    courses = {course.id: course.name for course in Course.select(Course.id, Course.name).where(
        Course.id.in_({order.course_id or sales.get(order.item_id) for order in found}))}
    views = []
    for order in found:
        course_id = order.course_id or sales.get(order.item_id)
        views.append(order.public() | times_of(order) | {
            'course': {'id': course_id, 'name': courses.get(course_id, 'a course')},
            'flash_sale': order.item_id is not None})
    return views


def times_of(order: Order) -> dict[str, str | None]:
    """The order's times as ISO 8601 text in UTC, for pages (stored times are naive UTC)."""
    return {name: getattr(order, name) and seckill.iso(getattr(order, name))
            for name in ('created_at', 'expires_at', 'paid_at', 'cancelled_at')}


def standing(user_id: int, course_id: int) -> dict:
    """Where the user stands with a course: following it, an order of it waiting for payment, or neither."""
    if Enrolment.select().where((Enrolment.user == user_id) & (Enrolment.course == course_id)).exists():
        return {'enrolled': True, 'order': None}
    waiting = (Order.select().where((Order.user == user_id) & (Order.course == course_id)
                                    & (Order.status == 'pending_payment')).first())
    return {'enrolled': False, 'order': waiting and waiting.public()}


def courses_of(user_id: int) -> list[dict]:
    """The courses the user follows, newest first."""
    rows = (Enrolment.select(Enrolment.created, Course.id, Course.name, Course.kind, Course.course_img)
            .join(Course).where(Enrolment.user == user_id).order_by(Enrolment.created.desc()).dicts())
    return [row | {'created': seckill.iso(row['created'])} for row in rows]
