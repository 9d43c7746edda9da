"""HTML pages: one autoescaping Jinja2 environment over views/, the page routes and static files."""
from urllib.parse import quote

from bottle import Bottle, redirect, request, static_file
from jinja2 import Environment, FileSystemLoader, select_autoescape

import banners
import tasks
from auth import Auth
from queue_api import RETRYABLE, REVOCABLE, STATES
from settings import PROJECT_DIR, Settings

VIEWS = PROJECT_DIR / 'views'
STATIC = PROJECT_DIR / 'static'


def create_env(settings: Settings) -> Environment:
    # Bottle's own Jinja2 adapter does not escape; this environment always does.
    env = Environment(loader=FileSystemLoader(VIEWS), autoescape=select_autoescape(default=True),
                      auto_reload=settings.app.debug)
    env.globals['site'] = {'base_url': settings.app.base_url}
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

    @app.get('/static/<path:path>')
    def static(path: str):
        return static_file(path, root=str(STATIC))
