"""The operator's console under /admin: a home, a list and an edit page for each kind of content,
and the orders, users and audit log. The pages only read; every write is a call from the page to the
JSON admin API (static/admin.js), so a page's edit is the API's, with its checks, audit and cache
invalidation, and its errors shown next to the fields they name."""
import datetime
import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bottle import response
from peewee import JOIN, Model, fn

import tasks
from models import (
    Banner,
    Course,
    CourseCategory,
    CourseChapter,
    CourseSection,
    Order,
    SeckillItem,
    TaskRecord,
    Teacher,
    User,
    utcnow,
)
from sprig.queue import charts, dashboard, records
from sprig.queue.dashboard import RETRYABLE, REVOCABLE, STATES
from sprig.settings import Settings
from sprig.shop import audit, seckill
from sprig.web import svg
from sprig.web.api import orders as order_api
from sprig.web.api import staff
from sprig.web.api.banners import NewBanner
from sprig.web.api.catalogue import TABLES
from sprig.web.api.seckill import NewSale
from sprig.web.forms import named, row_values, widgets
from sprig.web.listing import ListQuery, paged, searched, sorted_by
from sprig.web.pages import Render
from sprig.web.routing import Routes, get_or_404, or_404

ROUTES = Routes()
CONTENT_STATES = {'': 'not deleted', 'shown': 'shown', 'hidden': 'hidden', 'deleted': 'deleted'}
SALE_STATES = {'': 'any time', 'running': 'running', 'upcoming': 'upcoming', 'ended': 'ended'}


def live_choices(model: type[Model], label: str = 'name') -> list[tuple[int, str]]:
    return named(list(model.live().order_by(getattr(model, label))), label)


@dataclass(frozen=True)
class Section:
    """One kind of content the console lists and edits through its admin API."""

    name: str  # its part of /admin/<name>
    title: str
    noun: str
    model: type[Model]
    schema: type  # the API's body model for a new row: the edit form's fields
    api: str  # the admin API's rows
    columns: tuple[str, ...]
    search: tuple[str, ...]
    choices: Callable[[], dict[str, list]] = dict  # options of fields that name another row
    values: Callable[[Model], dict] = row_values  # a row as its form's values
    label: str = 'name'
    bulk: bool = True  # show, hide, delete and restore (content that can be hidden)
    sorts: tuple[str, ...] = field(default=('id', 'orders'))

    def rows(self, query: ListQuery) -> tuple[Any, str]:
        model = self.model
        found = searched(model.select(), tuple(getattr(model, name) for name in self.search), query.q)
        found = (filter_content if self.bulk else filter_sales)(found, model, query.filter('state'))
        return sorted_by(found, query.sort, {name: getattr(model, name) for name in self.sorts}, '-id')


def filter_content(found, model, state: str):
    return {'shown': found.where(model.is_show & ~model.is_delete),
            'hidden': found.where(~model.is_show & ~model.is_delete),
            'deleted': found.where(model.is_delete)}.get(state, found.where(~model.is_delete))


def filter_sales(found, model, state: str):
    now = utcnow()
    return {'running': found.where((model.starts_at <= now) & (model.ends_at > now)),
            'upcoming': found.where(model.starts_at > now),
            'ended': found.where(model.ends_at <= now)}.get(state, found)


SECTIONS = {section.name: section for section in (
    Section('banners', 'Banners', 'banner', Banner, NewBanner, '/api/v1/admin/banners',
            ('title', 'image', 'link', 'orders', 'is_show'), ('title', 'info', 'link'), label='title'),
    Section('categories', 'Categories', 'category', CourseCategory, TABLES['categories'].schema,
            '/api/v1/admin/categories', ('name', 'orders', 'is_show'), ('name',)),
    Section('teachers', 'Teachers', 'teacher', Teacher, TABLES['teachers'].schema, '/api/v1/admin/teachers',
            ('name', 'role', 'title', 'orders', 'is_show'), ('name', 'title', 'brief')),
    Section('courses', 'Courses', 'course', Course, TABLES['courses'].schema, '/api/v1/admin/courses',
            ('name', 'kind', 'price', 'status', 'teacher', 'category', 'students', 'is_show'), ('name', 'brief'),
            choices=lambda: {'teacher': live_choices(Teacher), 'category': live_choices(CourseCategory)},
            sorts=('id', 'orders', 'price', 'students', 'name')),
    Section('sales', 'Flash sales', 'flash sale', SeckillItem, NewSale, '/api/v1/admin/seckill/items',
            ('course', 'price', 'stock_left', 'stock_total', 'starts_at', 'ends_at'), (),
            choices=lambda: {'course_id': live_choices(Course)},
            values=lambda item: row_values(item) | {'course_id': item.course_id}, label='id', bulk=False,
            sorts=('id', 'starts_at', 'ends_at', 'price')),
)}
# The console's navigation: each page, and the staff level that may open it.
NAVIGATION = (('/admin', 'Home', 'editor'), *((f'/admin/{s.name}', s.title, 'editor') for s in SECTIONS.values()),
              ('/admin/orders', 'Orders', 'admin'), ('/admin/users', 'Users', 'admin'),
              ('/admin/tasks', 'Tasks', 'admin'), ('/admin/audit', 'Audit log', 'admin'))


def zone_of(settings: Settings) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.app.timezone)


def cell(value: Any, zone: zoneinfo.ZoneInfo) -> str:
    """A value as a list shows it."""
    if isinstance(value, Model):
        return next((str(getattr(value, name)) for name in ('name', 'title', 'username') if hasattr(value, name)),
                    f'#{value.get_id()}')
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.UTC).astimezone(zone).strftime('%Y-%m-%d %H:%M')
    if isinstance(value, Decimal):
        return f'{value:.2f}'
    return '' if value is None else str(value)


def listing(render: Render, settings: Settings, title: str, query: ListQuery, page, sort: str,
            columns: list[tuple[str, str]], rows: list[dict], **extra) -> str:
    """A list page: its filters and sort kept in every link it draws."""
    return render('admin/list.html', title=title, query=query, page=page, sort=sort, columns=columns, rows=rows,
                  nav=NAVIGATION, zone=settings.app.timezone, **extra)


def content_list(section: Section, query: ListQuery, settings: Settings, render: Render) -> str:
    found, sort = section.rows(query)
    page, zone = paged(found, query.page), zone_of(settings)
    rows = [{'id': row.id, 'link': f'/admin/{section.name}/{row.id}',
             'cells': [cell(getattr(row, name), zone) for name in section.columns],
             'deleted': getattr(row, 'is_delete', False)} for row in page.rows]
    columns = [(name, name.replace('_', ' ')) for name in section.columns]
    return listing(render, settings, section.title, query, page, sort, columns, rows, section=section,
                   filters=[('state', 'State', CONTENT_STATES if section.bulk else SALE_STATES)],
                   sortable=section.sorts, bulk=section.bulk and f'{section.api}/bulk',
                   new=f'/admin/{section.name}/new')


def content_form(section: Section, row: Model | None, settings: Settings, render: Render) -> str:
    values = section.values(row) if row is not None else {}
    form = widgets(section.schema, values, zone_of(settings), section.choices())
    extra = course_parts(row, settings) if section.name == 'courses' and row is not None else {}
    sale = section.name == 'sales' and row is not None and seckill.sale(row.id, settings)
    if sale:  # none when its course is hidden: then it sells nothing
        extra['sale'] = seckill.with_stock(sale, utcnow())
    return render('admin/edit.html', section=section, row=row, form=form, nav=NAVIGATION, zone=settings.app.timezone,
                  history=audit.history(row) if row is not None else [], **extra)


def course_parts(course: Course, settings: Settings) -> dict:
    """The course's chapters, each with its sections, as forms edited in place."""
    zone, chapter_schema, section_schema = zone_of(settings), TABLES['chapters'].schema, TABLES['sections'].schema
    chapters = list(CourseChapter.live().where(CourseChapter.course == course)
                    .order_by(CourseChapter.chapter, CourseChapter.orders, CourseChapter.id))  # as the course page
    sections = {}
    for part in (CourseSection.live().where(CourseSection.chapter.in_(chapters))
                 .order_by(CourseSection.orders, CourseSection.id)):
        sections.setdefault(part.chapter_id, []).append(part)
    chapter_fields = ('chapter', 'name', 'summary', 'orders', 'is_show')
    section_fields = ('name', 'section_type', 'section_link', 'duration', 'free_trail', 'orders', 'is_show')
    return {'chapters': [{
        'row': chapter, 'form': widgets(chapter_schema, row_values(chapter), zone, only=chapter_fields),
        'sections': [{'row': part, 'form': widgets(section_schema, row_values(part), zone, only=section_fields)}
                     for part in sections.get(chapter.id, [])],
        'new_section': widgets(section_schema, {}, zone, hidden={'chapter': chapter.id}, only=section_fields),
    } for chapter in chapters], 'new_chapter': widgets(chapter_schema, {'chapter': len(chapters) + 1}, zone,
                                                       hidden={'course': course.id}, only=chapter_fields)}


def declare_sections() -> None:
    for section in SECTIONS.values():
        rows, fixed = f'/admin/{section.name}', {'section': section}
        ROUTES.add('GET', rows, content_list, auth='editor', query=ListQuery, fixed=fixed)
        ROUTES.add('GET', f'{rows}/new', new_row, auth='editor', fixed=fixed)
        ROUTES.add('GET', f'{rows}/<row_id:int>', edit_row, auth='editor', fixed=fixed)


def new_row(section: Section, settings: Settings, render: Render) -> str:
    return content_form(section, None, settings, render)


def edit_row(section: Section, row_id: int, settings: Settings, render: Render) -> str:
    row = get_or_404(section.model.select(), section.model.id == row_id, missing=f'no {section.noun} {row_id}')
    return content_form(section, row, settings, render)


declare_sections()


@ROUTES.get('/admin', auth='editor')
def home(user: User, settings: Settings, render: Render) -> str:
    now, zone = utcnow(), zone_of(settings)
    today = datetime.datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today.astimezone(datetime.UTC).replace(tzinfo=None)
    sales = [sale for sale in (seckill.with_stock(sale, now) for sale in seckill.sales(settings))
             if sale['state'] != 'ended']
    figures = {}
    if user.is_admin:
        figures = {
            'orders': Order.select().where(Order.created_at >= since).count(),
            'paid': Order.select().where((Order.paid_at >= since) & (Order.status == 'paid')).count(),
            'revenue': Order.select(fn.COALESCE(fn.SUM(Order.price), 0))
            .where((Order.paid_at >= since) & (Order.status == 'paid')).scalar(),
            'failed': list(TaskRecord.select().where(TaskRecord.state.in_(('failed', 'lost')))
                           .order_by(TaskRecord.created_at.desc()).limit(10)),
        }
    return render('admin/home.html', nav=NAVIGATION, sales=sales, figures=figures, zone=settings.app.timezone,
                  cell=lambda value: cell(value, zone))


@ROUTES.get('/admin/tasks', auth='admin')
def admin_tasks(render: Render) -> str:
    # The page fills itself from the admin API; these only set up its filters and buttons.
    return render('admin/tasks.html', nav=NAVIGATION, states=STATES, names=sorted(tasks.huey.infos),
                  retryable=RETRYABLE, revocable=REVOCABLE)


def task_subjects(record: TaskRecord) -> dict:
    """What a task is about, for links: the order it made or is given, the user who caused it."""
    order = Order.get_or_none(Order.task_id == record.id)
    if order is None and record.payload and record.name == 'cancel_unpaid_order':
        order = Order.get_or_none(Order.id == json.loads(record.payload)[0][0])
    causer = User.get_or_none(User.id == record.user_id) if record.user_id else None
    return {'order': order, 'causer': causer}


@ROUTES.get('/admin/tasks/<task_id>', auth='admin')
def task_page(task_id: str, settings: Settings, render: Render) -> str:
    record = or_404(records.find(tasks.huey, task_id), f'no task {task_id}')
    events = records.timeline(record)
    return render('admin/task.html', nav=NAVIGATION, record=record, events=events,
                  errors=[event for event in events if event['error']], no_retry=dashboard.retry_refusal(
                      tasks.huey, record), retryable=RETRYABLE, revocable=REVOCABLE,
                  cell=lambda value: cell(value, zone_of(settings)), **task_subjects(record))


def latest_sale() -> int | None:
    """The sale whose presses the chart shows: the one pressed last."""
    press = (TaskRecord.select(TaskRecord.payload).where((TaskRecord.name == 'create_order')
                                                         & TaskRecord.payload.is_null(False))
             .order_by(TaskRecord.created_at.desc()).first())
    return press and json.loads(press.payload)[0][1]


def chart(name: str) -> str:
    hour = lambda moment: moment.strftime('%H:%M')  # noqa: E731 (a label)
    if name == 'outcomes-hour':
        return svg.stacked('Tasks ended per minute, last hour (UTC)', charts.outcomes(3600, 60), hour)
    if name == 'outcomes-day':
        return svg.stacked('Tasks ended per 15 minutes, last day (UTC)', charts.outcomes(86400, 900), hour)
    if name == 'depth':
        return svg.line('Tasks waiting in the queue, last hour (UTC)', charts.depth(3600, 60), hour)
    if name == 'durations':
        return svg.per_name('Run time per task, last hour: p50 and p95', charts.durations(3600))
    item_id = latest_sale()
    found = item_id and charts.presses(item_id)
    if not found:
        return svg.empty('Flash-sale presses per second', 'No press of a sale has reached the queue yet.')
    return svg.stacked(f'Presses per second of sale #{item_id} that reached the queue, by outcome', found,
                       lambda moment: moment.strftime('%H:%M:%S'))


@ROUTES.get('/admin/charts/<name:re:outcomes-hour|outcomes-day|depth|durations|presses>.svg', auth='admin')
def chart_image(name: str) -> str:
    response.content_type = 'image/svg+xml'
    response.set_header('Cache-Control', 'no-store')
    return chart(name)


@ROUTES.get('/admin/orders', auth='admin', query=ListQuery)
def order_list(query: ListQuery, settings: Settings, render: Render) -> str:
    found, sort = order_api.orders_of(query)
    page, zone = paged(found, query.page), zone_of(settings)
    rows = [{'id': order.id, 'link': f'/admin/orders/{order.id}', 'cells': [
        order.id, order.user.username, f'sale #{order.item_id}' if order.item_id else f'course #{order.course_id}',
        cell(order.price, zone), order.status.replace('_', ' '), cell(order.created_at, zone)]} for order in page.rows]
    columns = [('id', 'id'), ('', 'buyer'), ('', 'for'), ('price', 'price'), ('status', 'status'),
               ('created_at', 'created')]
    states = {'': 'any state'} | {status: status.replace('_', ' ') for status in Order.STATUSES}
    sales = {'': 'any sale'} | {str(item.id): f'#{item.id} {item.course.name}' for item in
                                SeckillItem.select(SeckillItem, Course).join(Course).order_by(SeckillItem.id.desc())}
    return listing(render, settings, 'Orders', query, page, sort, columns, rows, sortable=tuple(order_api.ORDER_SORTS),
                   filters=[('status', 'State', states), ('item', 'Sale', sales)], kept=('user',))


def task_history(order: Order) -> list[TaskRecord]:
    """The tasks about an order: the press that made it, and those given its id (its cancellation)."""
    about = json.dumps([[order.id], {}])
    return list(TaskRecord.select().where((TaskRecord.id == order.task_id) | (TaskRecord.payload == about))
                .order_by(TaskRecord.created_at))


@ROUTES.get('/admin/orders/<order_id:int>', auth='admin')
def order_page(order_id: int, settings: Settings, render: Render) -> str:
    order = get_or_404(Order.select(Order, User).join(User), Order.id == order_id, missing=f'no order {order_id}')
    course = Course.get_or_none(Course.id == (order.course_id or SeckillItem.get_by_id(order.item_id).course_id))
    return render('admin/order.html', nav=NAVIGATION, order=order, course=course, tasks=task_history(order),
                  history=audit.history(order), cell=lambda value: cell(value, zone_of(settings)))


@ROUTES.get('/admin/users', auth='admin', query=ListQuery)
def user_list(query: ListQuery, settings: Settings, render: Render) -> str:
    found, sort = staff.users_of(query)
    page, zone = paged(found, query.page), zone_of(settings)
    rows = [{'id': user.id, 'link': f'/admin/users/{user.id}', 'cells': [
        user.id, user.username, user.mobile or '', user.email or '', user.role, cell(user.is_active, zone),
        cell(user.last_login, zone)]} for user in page.rows]
    columns = [('id', 'id'), ('username', 'username'), ('', 'mobile'), ('', 'e-mail'), ('', 'role'), ('', 'active'),
               ('last_login', 'last sign-in')]
    return listing(render, settings, 'Users', query, page, sort, columns, rows,
                   filters=[('role', 'Role', {'': 'any role'} | {role: role for role in User.ROLES}),
                            ('active', 'Active', {'': 'active or not', 'yes': 'active', 'no': 'disabled'})],
                   sortable=tuple(staff.USER_SORTS))


@ROUTES.get('/admin/users/<user_id:int>', auth='admin')
def user_page(user_id: int, user: User, settings: Settings, render: Render) -> str:
    account = staff.account_or_404(user_id)
    bought = (Order.select(Order, SeckillItem).join(SeckillItem, JOIN.LEFT_OUTER).where(Order.user == account)
              .order_by(Order.id.desc()).limit(100))
    return render('admin/user.html', nav=NAVIGATION, account=account, orders=list(bought), roles=User.ROLES,
                  history=audit.history(account), own=account.id == user.id,
                  cell=lambda value: cell(value, zone_of(settings)))


# Where an audit entry's row is shown, by its table.
PAGES = {Banner._meta.table_name: 'banners', CourseCategory._meta.table_name: 'categories',
         Teacher._meta.table_name: 'teachers', Course._meta.table_name: 'courses',
         SeckillItem._meta.table_name: 'sales', Order._meta.table_name: 'orders', User._meta.table_name: 'users'}


@ROUTES.get('/admin/audit', auth='admin', query=ListQuery)
def audit_log(query: ListQuery, settings: Settings, render: Render) -> str:
    page, zone = paged(staff.audit_of(query), query.page), zone_of(settings)
    rows = [{'id': entry.id, 'link': f'/admin/{PAGES[entry.kind]}/{entry.row_id}' if entry.kind in PAGES else '',
             'cells': [cell(entry.at, zone), entry.actor_name, entry.action, f'{entry.kind} #{entry.row_id}',
                       changes_text(json.loads(entry.changes))]} for entry in page.rows]
    columns = [('', 'when'), ('', 'who'), ('', 'action'), ('', 'what'), ('', 'changes')]
    kinds = {'': 'any table'} | {kind: kind for kind in sorted(PAGES) + [CourseChapter._meta.table_name,
                                                                        CourseSection._meta.table_name]}
    return listing(render, settings, 'Audit log', query, page, '', columns, rows,
                   filters=[('kind', 'Table', kinds)], sortable=(), kept=('row_id', 'action'))


def changes_text(changes: dict) -> str:
    return '; '.join(f'{name}: {after!r}' if before is None else f'{name}: {before!r} → {after!r}'
                     for name, (before, after) in changes.items())
