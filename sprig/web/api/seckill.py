"""The seckill routes of API.md: sales, the press, its result, orders and payment, admin sales."""
import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

import tasks
from models import Course, SeckillItem, User, utcnow
from sprig.metrics import metrics
from sprig.settings import Settings
from sprig.shop import seckill
from sprig.web.envelope import ApiError, ok, refuse
from sprig.web.inputs import Change, Input, validated
from sprig.web.routing import Routes, get_or_404, or_404

ROUTES = Routes()
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
Price = Annotated[Decimal, Field(ge=0, le=10_000_000, max_digits=10, decimal_places=2)]
Stock = Annotated[int, Field(ge=0, le=10_000_000)]


class Press(Input):
    item_id: Id


class NewSale(Input):
    course_id: Id
    price: Price
    stock_total: Stock
    starts_at: AwareDatetime  # ISO 8601 with an offset: a time without one is ambiguous
    ends_at: AwareDatetime

    @model_validator(mode='after')
    def ends_after_start(self) -> 'NewSale':
        if self.ends_at <= self.starts_at:
            raise ValueError('ends_at must come after starts_at')
        return self


class ResultQuery(Input):
    """Other parameters are ignored, as they always were here."""

    model_config = ConfigDict(extra='ignore')
    task_id: Annotated[str, Field(min_length=1, max_length=64)]


class SaleChange(Change):
    """Only the fields given change; the sale is then validated whole (NewSale)."""

    course_id: Id = None
    price: Price = None
    stock_total: Stock = None
    starts_at: AwareDatetime = None
    ends_at: AwareDatetime = None


def naive_utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def check_course(course_id: int) -> None:
    if not Course.live().where(Course.id == course_id).exists():
        raise ApiError(400, 'invalid input: course_id', errors={'course_id': f'no such course: {course_id}'})


def sale_or_404(item_id: int, settings: Settings) -> dict:
    return or_404(seckill.sale(item_id, settings), f'no sale {item_id}')


@ROUTES.get('/api/v1/seckill/items', 'Flash sales with live stock and state')
def list_sales(settings: Settings) -> dict:
    now = utcnow()
    return ok(result=[seckill.with_stock(sale, now) for sale in seckill.sales(settings)])


@ROUTES.get('/api/v1/seckill/items/<item_id:int>', 'One flash sale', statuses=(404,))
def one_sale(item_id: int, settings: Settings) -> dict:
    return ok(result=seckill.with_stock(sale_or_404(item_id, settings), utcnow()))


@ROUTES.post('/api/v1/seckill', 'Press: 202 with a task id, or 101 sold out / already holding one', auth='user',
             body=Press, statuses=(202, 404))
def press(user: User, body: Press, settings: Settings) -> dict:
    sale = sale_or_404(body.item_id, settings)
    now = utcnow()
    if now < seckill.parse(sale['starts_at']):
        metrics.press('not_started')
        raise ApiError(400, 'the sale has not started yet')
    if now >= seckill.parse(sale['ends_at']):
        metrics.press('ended')
        raise ApiError(400, 'the sale has ended')
    taken = seckill.claim(sale, user, settings)
    metrics.press({'held': 'held', 'empty': 'sold_out'}.get(taken, 'queued'))
    if taken == 'held':
        return refuse('you already hold an order for this sale')
    if taken == 'empty':
        return refuse('sold out')
    try:
        result = tasks.create_order(user.id, sale['id'])
    except Exception:
        seckill.release(sale['id'], user.id)  # it never reached the queue: the unit goes back
        raise
    return ok('queued', status=202, task_id=result.id)


@ROUTES.get('/api/v1/seckill/result', "A press's outcome: 100 won, 101 lost, 102 queued, 103 running, 104 error",
            auth='user', query=ResultQuery, statuses=(404,))
def press_result(user: User, query: ResultQuery) -> dict:
    answer = or_404(seckill.press_result(query.task_id, user.id, tasks.huey), f'no seckill submission {query.task_id}')
    return {**answer, 'task_id': query.task_id}


@ROUTES.post('/api/v1/admin/seckill/items', 'Open a flash sale', auth='editor', body=NewSale, statuses=(201,))
def create_sale(body: NewSale, user: User, settings: Settings) -> dict:
    check_course(body.course_id)
    item = seckill.open_sale(body.course_id, body.price, body.stock_total, naive_utc(body.starts_at),
                             naive_utc(body.ends_at), user)
    return ok('created', status=201, result=seckill.with_stock(seckill.sale(item.id, settings), utcnow()))


@ROUTES.patch('/api/v1/admin/seckill/items/<item_id:int>', 'Change a flash sale', auth='editor', body=SaleChange,
              statuses=(404,))
def change_sale(item_id: int, body: SaleChange, user: User, settings: Settings) -> dict:
    """Any of the creation's fields; a new stock_total moves stock_left and the shared counter
    by the difference."""
    item = get_or_404(SeckillItem.select(), SeckillItem.id == item_id, missing=f'no sale {item_id}')
    stored = {'course_id': item.course_id, 'price': item.price, 'stock_total': item.stock_total,
              'starts_at': item.starts_at.replace(tzinfo=datetime.UTC),
              'ends_at': item.ends_at.replace(tzinfo=datetime.UTC)}
    sale = validated(NewSale, stored | body.model_dump(exclude_unset=True))
    check_course(sale.course_id)
    if not seckill.change_sale(item, sale.course_id, sale.price, sale.stock_total, naive_utc(sale.starts_at),
                               naive_utc(sale.ends_at), user):
        raise ApiError(400, 'stock_total is below the units already sold',
                       errors={'stock_total': f'at least {item.stock_total - item.stock_left} were sold'})
    return ok(result=seckill.with_stock(seckill.sale(item_id, settings), utcnow()))
