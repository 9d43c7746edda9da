"""HTML pages: one autoescaping Jinja2 environment over views/, the page routes and static files."""
import datetime
import math
import zoneinfo
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from bottle import redirect, request, static_file
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ConfigDict, Field

from models import Course, Order, User, utcnow
from sprig.settings import PROJECT_DIR, Settings
from sprig.shop import banners, catalogue, orders, seckill
from sprig.web.auth import Auth
from sprig.web.inputs import Input
from sprig.web.routing import Routes, get_or_404, or_404

ROUTES = Routes()
Render = Callable[..., str]

VIEWS = PROJECT_DIR / 'views'
STATIC = PROJECT_DIR / 'static'
KINDS = {'free': 'Free courses', 'actual': 'Practical courses', 'light': 'Light courses'}
PAGE_SIZE = 12  # course cards per page
ORDERINGS = {'orders': 'Recommended', '-students': 'Most popular', '-id': 'Newest',
             'price': 'Price: low to high', '-price': 'Price: high to low'}


def create_env(settings: Settings) -> Environment:
    # Bottle's own Jinja2 adapter does not escape; this environment always does.
    env = Environment(loader=FileSystemLoader(VIEWS), autoescape=select_autoescape(default=True),
                      auto_reload=settings.app.debug)
    env.globals['site'] = {'base_url': settings.app.public_url}
    env.globals['request'] = request  # Bottle's: the current request in each thread
    zone = zoneinfo.ZoneInfo(settings.app.timezone)
    env.filters['localtime'] = lambda text: (datetime.datetime.fromisoformat(text).astimezone(zone)
                                             .strftime('%Y-%m-%d %H:%M %Z'))
    return env


def render_page(env: Environment, auth: Auth, name: str, **context) -> str:
    """A page of views/, with the signed-in user for its header."""
    return env.get_template(name).render(user=auth.current_user(), **context)


def local_next() -> str:
    """The ?next= page to return to after signing in: a path on this site, never another site."""
    return local_path(request.query.getunicode('next'))


def local_path(target: str | None) -> str:
    """target when it is a path on this site, else /: never another site."""
    target = target or '/'
    # Browsers drop tabs and newlines from URLs and read '\\' as '/': '/\t/evil' is '//evil'.
    odd = any(char <= ' ' or char in '\x7f\\' for char in target)
    if odd or not target.startswith('/') or target.startswith('//'):
        return '/'
    return target


@ROUTES.get('/')
def home(settings: Settings, render: Render) -> str:
    now = utcnow()
    live = [sale for sale in (seckill.with_stock(sale, now) for sale in seckill.sales(settings))
            if sale['state'] in ('active', 'sold_out')]
    popular = catalogue.course_page(catalogue.CourseQuery(ordering='-students', size=4), settings).value['items']
    return render('home.html', banners=banners.cached_banners(settings).value, sales=live, popular=popular)


@ROUTES.get('/search', query=catalogue.CourseQuery)
def search(query: catalogue.CourseQuery, settings: Settings, render: Render) -> str:
    page = catalogue.course_page(query.model_copy(update={'size': PAGE_SIZE}), settings).value if query.q else None
    return render('search.html', query=query, page=page, search_words=query.q)


def guest_page(template: str, auth: Auth, render: Render) -> str:
    """A sign-in page: a visitor already signed in goes straight on to ?next=."""
    if auth.current_user():
        redirect(local_next())
    return render(template, next=local_next())


ROUTES.add('GET', '/login', guest_page, fixed={'template': 'login.html'})
ROUTES.add('GET', '/register', guest_page, fixed={'template': 'register.html'})
ROUTES.add('GET', '/password/reset', guest_page, fixed={'template': 'password_reset.html'})


@ROUTES.get('/courses/<kind:re:free|actual|light>', query=catalogue.CourseQuery)
def course_list(kind: str, query: catalogue.CourseQuery, settings: Settings, render: Render) -> str:
    query = query.model_copy(update={'kind': kind, 'size': query.size if 'size' in request.query else PAGE_SIZE})
    page = catalogue.course_page(query, settings).value

    def link(**changes) -> str:
        """This list's address with some parameters changed (defaults left out)."""
        params = {'category': query.category, 'ordering': query.ordering, 'page': query.page,
                  'size': query.size} | changes
        defaults = (('ordering', 'orders'), ('page', 1), ('size', PAGE_SIZE))
        kept = {k: v for k, v in params.items() if v and (k, v) not in defaults}
        return f'/courses/{kind}' + (f'?{urlencode(kept)}' if kept else '')
    return render('courses.html', kind=kind, heading=KINDS[kind], kinds=KINDS, query=query, page=page,
                  pages=max(1, math.ceil(page['count'] / query.size)), orderings=ORDERINGS, link=link,
                  categories=catalogue.categories(settings).value)


@ROUTES.get('/course/<course_id:int>')
def course_detail(course_id: int, user: User | None, settings: Settings, render: Render) -> str:
    course = or_404(catalogue.course_detail(course_id, settings).value, f'no course {course_id}')
    standing = orders.standing(user.id, course_id) if user else None
    sale = course['seckill'] and seckill.sale(course['seckill']['id'], settings)
    sale_state = sale and seckill.with_stock(sale, utcnow())['state']  # live: the cached page cannot know
    return render('course.html', course=course, heading=KINDS[course['kind']], standing=standing,
                  sale_state=sale_state)


@ROUTES.get('/seckill')
def sales(settings: Settings, render: Render) -> str:
    now = utcnow()
    return render('sales.html', sales=[seckill.with_stock(sale, now) for sale in seckill.sales(settings)])


@ROUTES.get('/seckill/<item_id:int>')
def sale(item_id: int, user: User | None, settings: Settings, render: Render) -> str:
    found = or_404(seckill.sale(item_id, settings), f'no sale {item_id}')
    mine = seckill.viewer(item_id, user.id) if user else {'order': None, 'task_id': None}
    return render('seckill.html', sale=seckill.with_stock(found, utcnow()), mine=mine,
                  poll_interval=settings.seckill.poll_interval,
                  payment_minutes=max(1, settings.seckill.payment_timeout // 60))


@ROUTES.get('/orders', auth='user')
def my_orders(user: User, render: Render) -> str:
    return render('orders.html', orders=orders.orders_of(user.id))


@ROUTES.get('/my/courses', auth='user')
def my_courses(user: User, render: Render) -> str:
    return render('my_courses.html', courses=orders.courses_of(user.id))


@ROUTES.get('/account', auth='user')
def account(render: Render) -> str:
    return render('account.html', changed=request.query.getunicode('changed') == '1')


@ROUTES.get('/pay/simulated/<order_id:int>', auth='user')
def simulated_checkout(order_id: int, user: User, render: Render) -> str:
    """The simulated provider's checkout page (a real provider's is on its own site)."""
    order = get_or_404(Order.select(), Order.id == order_id, Order.user == user, missing=f'no order {order_id}')
    name = Course.get_by_id(orders.course_of(order)).name
    back = local_path(request.query.getunicode('back'))
    return render('pay_simulated.html', order=order, course_name=name, back=back)


class ReturnQuery(Input):
    """A provider may add parameters of its own: they are ignored."""

    model_config = ConfigDict(extra='ignore')
    order: Annotated[int, Field(ge=1, le=2**31 - 1)]


@ROUTES.get('/pay/return', auth='user', query=ReturnQuery)
def payment_return(user: User, query: ReturnQuery, render: Render) -> str:
    """Where the provider sends the buyer back: the order as the shop knows it now."""
    order = get_or_404(Order.select(), Order.id == query.order, Order.user == user, missing=f'no order {query.order}')
    return render('pay_return.html', order=order, course_id=orders.course_of(order))


@ROUTES.get('/terms')
def terms(render: Render) -> str:
    return render('terms.html')


@ROUTES.get('/favicon.ico')
def favicon():
    return static_file('favicon.svg', root=str(STATIC), mimetype='image/svg+xml')


@ROUTES.get('/static/<path:path>')
def static(path: str):
    return static_file(path, root=str(STATIC))
