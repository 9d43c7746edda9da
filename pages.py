"""HTML pages: one autoescaping Jinja2 environment over views/, the page routes and static files."""
import datetime
import math
import zoneinfo
from urllib.parse import quote, urlencode

from bottle import Bottle, redirect, request, static_file
from jinja2 import Environment, FileSystemLoader, select_autoescape

import banners
import courses
import seckill
import tasks
from api import ApiError, parse_query
from auth import Auth
from models import utcnow
from openapi import install_openapi
from queue_api import RETRYABLE, REVOCABLE, STATES
from settings import PROJECT_DIR, Settings

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
    env.globals['site'] = {'base_url': settings.app.base_url}
    zone = zoneinfo.ZoneInfo(settings.app.timezone)
    env.filters['localtime'] = lambda text: (datetime.datetime.fromisoformat(text).astimezone(zone)
                                             .strftime('%Y-%m-%d %H:%M %Z'))
    return env


def local_next() -> str:
    """The ?next= page to return to after signing in: a path on this site, never another site."""
    target = request.query.getunicode('next') or '/'
    # Browsers drop tabs and newlines from URLs and read '\\' as '/': '/\t/evil' is '//evil'.
    odd = any(char <= ' ' or char in '\x7f\\' for char in target)
    if odd or not target.startswith('/') or target.startswith('//'):
        return '/'
    return target


def install_pages(app: Bottle, env: Environment, settings: Settings, auth: Auth) -> None:
    """Mount the pages and /static/ on app."""

    def render(name: str, **context) -> str:
        return env.get_template(name).render(user=auth.current_user(), **context)

    @app.get('/')
    def home() -> str:
        return render('home.html', banners=banners.cached_banners(settings).value)

    def guest_page(name: str) -> str:
        """A sign-in page: a visitor already signed in goes straight on to ?next=."""
        if auth.current_user():
            redirect(local_next())
        return render(name, next=local_next())

    app.get('/login', callback=lambda: guest_page('login.html'))
    app.get('/register', callback=lambda: guest_page('register.html'))

    @app.get('/admin/tasks')
    def admin_tasks() -> str:
        if auth.current_user() is None:
            # Back here after signing in, filters (kept in the query string) included.
            here = request.fullpath + (f'?{request.query_string}' if request.query_string else '')
            redirect('/login?next=' + quote(here))
        auth.require_admin()
        # The page fills itself from the admin API; these only set up its filters and buttons.
        return render('admin_tasks.html', states=STATES, names=sorted(tasks.huey.infos),
                      retryable=RETRYABLE, revocable=REVOCABLE)

    @app.get('/courses/<kind:re:free|actual|light>')
    def course_list(kind: str) -> str:
        query = parse_query(courses.CourseQuery)
        query = query.model_copy(update={'kind': kind, 'size': query.size if 'size' in request.query else PAGE_SIZE})
        page = courses.course_page(query, settings).value

        def link(**changes) -> str:
            """This list's address with some parameters changed (defaults left out)."""
            params = {'category': query.category, 'ordering': query.ordering, 'page': query.page,
                      'size': query.size} | changes
            defaults = (('ordering', 'orders'), ('page', 1), ('size', PAGE_SIZE))
            kept = {k: v for k, v in params.items() if v and (k, v) not in defaults}
            return f'/courses/{kind}' + (f'?{urlencode(kept)}' if kept else '')
        return render('courses.html', kind=kind, heading=KINDS[kind], kinds=KINDS, query=query, page=page,
                      pages=max(1, math.ceil(page['count'] / query.size)), orderings=ORDERINGS, link=link,
                      categories=courses.categories(settings).value)

    @app.get('/course/<course_id:int>')
    def course_detail(course_id: int) -> str:
        course = courses.course_detail(course_id, settings).value
        if course is None:
            raise ApiError(404, f'no course {course_id}')
        return render('course.html', course=course, heading=KINDS[course['kind']])

    @app.get('/seckill')
    def sales() -> str:
        now = utcnow()
        return render('sales.html', sales=[seckill.with_stock(sale, now) for sale in seckill.sales(settings)])

    @app.get('/seckill/<item_id:int>')
    def sale(item_id: int) -> str:
        found = seckill.sale(item_id, settings)
        if found is None:
            raise ApiError(404, f'no sale {item_id}')
        return render('seckill.html', sale=seckill.with_stock(found, utcnow()),
                      poll_interval=settings.seckill.poll_interval,
                      payment_minutes=max(1, settings.seckill.payment_timeout // 60))

    install_openapi(app, render, settings.app.base_url)

    @app.get('/static/<path:path>')
    def static(path: str):
        return static_file(path, root=str(STATIC))
