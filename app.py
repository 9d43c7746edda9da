"""Sprig's web app: create_app(settings) builds it, installs its hooks and error pages, and mounts
every route module's declarations.

    python app.py [serve|initdb|migrate|seed|ping|create-admin|backup] ...   (sprig/cli.py)
    waitress-serve --host 127.0.0.1 --port 8080 --call app:make_app

Importing this module starts no server and no consumer; it does read the settings and open the
queue and cache files (via tasks).
"""
import functools
import itertools
import logging
import re
import secrets
import sys
import time
import traceback
from collections.abc import Callable
from urllib.parse import urlsplit

import peewee
from bottle import BaseResponse, Bottle, HTTPError, HTTPResponse, JSONPlugin, request, response
from jinja2 import Environment

import tasks
from models import database
from sprig import logs
from sprig.cache.store import CacheError
from sprig.db.schema import create_tables
from sprig.metrics import metrics
from sprig.queue.storage import QUEUE_ERRORS
from sprig.settings import Settings
from sprig.web import console, openapi, pages
from sprig.web.api import banners, catalogue, health, orders, queue, seckill, staff, uploads, users
from sprig.web.auth import Auth
from sprig.web.envelope import ApiError, to_json
from sprig.web.routing import RoutePlugin, mount

log = logging.getLogger('sprig')
access_log = logging.getLogger('sprig.access')
REQUEST_ID = re.compile(r'^[A-Za-z0-9._-]{1,64}$')
# A request's own id: this process's random prefix and a count, unique without a system call each
# (os.urandom was 4% of a cached read's time); an id is a name, never a secret.
ID_PREFIX, ID_COUNT = secrets.token_hex(4), itertools.count(1)
# Every route module, in mounting order; the OpenAPI document lists their /api/v1/ routes.
ROUTE_MODULES = (health, users, staff, queue, banners, catalogue, seckill, orders, uploads, console, pages, openapi)


def create_app(settings: Settings) -> Bottle:
    """The WSGI app for `settings`; also binds the database, queue and cache to them."""
    tasks.configure(settings)
    app = Bottle()
    # <id:int> in a route takes 1 to 15 ASCII digits: a longer number (which no row has) is a 404,
    # not an overflow in the database driver (found by fuzzing), and ٣ is no 3.
    app.router.add_filter('int', lambda config: (r'[0-9]{1,15}', int, str))
    env = pages.create_env(settings)
    auth = Auth(settings)
    app.uninstall('json')  # put back below, inside the guard and able to encode dates
    app.install(guard)
    app.install(JSONPlugin(json_dumps=to_json))
    app.install(RoutePlugin(settings, auth, functools.partial(pages.render_page, env, auth)))
    app.default_error_handler = functools.partial(render_error, env, auth, settings.app.debug)
    app.add_hook('before_request', functools.partial(start_request, settings.app.max_body_kb * 1024,
                                                     uploads.body_limit(settings)))
    app.add_hook('after_request',
                 functools.partial(finish_request, security_headers(settings), settings.app.access_log))
    for module in ROUTE_MODULES:
        mount(app, module.ROUTES)
    return app


def make_app() -> Bottle:
    """Factory for `waitress-serve --call app:make_app`: the app from config.ini and SPRIG_*.

    Creates missing tables, but adds no demo data: that is `python app.py seed`'s choice.
    """
    app = create_app(tasks.settings)
    create_tables()
    return app


def start_request(limit: int, upload_limit: int) -> None:
    given = request.get_header('X-Request-ID', '')
    own = f'{ID_PREFIX}{next(ID_COUNT) & 0xffffffff:08x}'
    request.environ['sprig.request_id'] = given if REQUEST_ID.match(given) else own
    request.environ['sprig.started'] = time.perf_counter()
    logs.begin(request_id=request.environ['sprig.request_id'])  # its log lines and the tasks it enqueues
    # The declared length is refused before anything reads the body; envelope.json_body also
    # stops reading at the limit for bodies sent without one. Only the upload route takes files.
    if request.path == uploads.PATH:
        limit = max(limit, upload_limit)
    if request.content_length > limit:
        raise ApiError(413, f'request body too large (limit {limit // 1024} KB)')


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers for every answer: only our own scripts and styles run, nobody frames our pages.
    Images may also come from https (a banner may name a CDN); inline code never runs, and none
    of our pages has any."""
    site = urlsplit(settings.app.public_url)
    headers = {
        'Content-Security-Policy': (f"default-src 'self'; img-src 'self' {site.scheme}://{site.netloc} https: data:; "
                                    "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'self'; "
                                    "form-action 'self'; frame-ancestors 'none'"),
        'X-Content-Type-Options': 'nosniff',
        'X-Frame-Options': 'DENY',
        'Referrer-Policy': 'strict-origin-when-cross-origin',
    }
    if site.scheme == 'https':
        headers['Strict-Transport-Security'] = 'max-age=31536000'
    check = BaseResponse()
    for name, value in headers.items():
        check.set_header(name, value)  # refuses what Bottle would (finish_request sets them directly)
    return {name: values[0] for name, values in check._headers.items()}


def finish_request(headers: dict[str, str], log: bool) -> None:
    # Peewee opens a connection on a request's first query (autoconnect); this gives it back,
    # and runs even when the route raised.
    if not database.is_closed():
        database.close()
    request_id = request.environ.get('sprig.request_id', '-')
    # Bottle's set_header checks and spells each name and value on every call; these were checked
    # once (security_headers), and the id is our own or matched REQUEST_ID: straight into its table.
    response._headers.update({name: [value] for name, value in headers.items()})
    response._headers['X-Request-Id'] = [request_id]
    logging_it = log and access_log.isEnabledFor(logging.INFO)  # its parts cost more than the check
    if not (metrics.on or logging_it):
        return
    elapsed = time.perf_counter() - request.environ.get('sprig.started', time.perf_counter())
    route = route_of(request.environ)
    metrics.request(route, request.method, response.status_code, elapsed)
    if logging_it:
        user = request.environ.get('sprig.user')
        access_log.info('%s %s %s %.1fms id=%s', request.method, printable(request.fullpath),
                        response.status_code, elapsed * 1000, request_id, extra={
                            'route': route, 'method': request.method, 'status': response.status_code,
                            'duration_ms': round(elapsed * 1000, 2), 'user_id': user.id if user else None})


def route_of(environ: dict) -> str:
    """The template of the route that answered (/api/v1/courses/<course_id:int>), or 'unmatched'."""
    route = environ.get('bottle.route')
    return route.rule if route is not None else 'unmatched'


def printable(text: str) -> str:
    """text for a log line: control characters escaped, so that a path cannot forge lines or
    drive the terminal that shows the log (ESC sequences)."""
    return text if text.isprintable() else ''.join(
        char if char.isprintable() else repr(char)[1:-1] for char in text)


def failed_component(exc: Exception) -> str | None:
    """Which dependency an exception says is down, if any."""
    if isinstance(exc, (peewee.OperationalError, peewee.InterfaceError)):
        return 'database'
    if isinstance(exc, CacheError):
        return 'cache'
    if isinstance(exc, QUEUE_ERRORS):
        return 'queue'
    return None


def guard(callback: Callable) -> Callable:
    """Plugin: a failing dependency answers 503; any other unexpected error a logged 500."""

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except HTTPResponse:
            raise
        except Exception as exc:
            request_id = request.environ.get('sprig.request_id')
            component = failed_component(exc)
            if component:
                log.warning('%s unavailable (id=%s): %s', component, request_id, exc)
                raise ApiError(503, f'{component} unavailable, try again shortly',
                               component=component) from exc
            log.exception('unexpected error in %s %s (id=%s)', request.method, request.path,
                          request_id)
            raise HTTPError(500, 'internal server error', exc, traceback.format_exc()) from exc

    return wrapper


def error_message(err: HTTPError) -> str:
    if isinstance(err, ApiError):
        return err.body
    if err.status_code == 404:
        return f'not found: {request.path}'
    if err.status_code == 405:
        return f'method {request.method} not allowed (allowed: {err.get_header("Allow", "none")})'
    if err.status_code >= 500:
        return 'internal server error'
    return str(err.body)


def render_error(env: Environment, auth: Auth, debug: bool, err: HTTPError) -> str:
    """Every error answer: JSON under /api/, an HTML page elsewhere; details only in debug."""
    body = {'code': err.status_code, 'msg': error_message(err), **getattr(err, 'payload', {})}
    if err.status_code >= 500:
        body['request_id'] = request.environ.get('sprig.request_id')
    trace = err.traceback if debug else None
    if request.path.startswith(('/api/', '/metrics')):  # what programs read answers in JSON
        response.content_type = 'application/json'
        return to_json({**body, 'traceback': trace} if trace else body)
    response.content_type = 'text/html; charset=utf-8'
    return env.get_template('error.html').render(error=body, reason=err.status_line, traceback=trace,
                                                 user=signed_in(auth))


def signed_in(auth: Auth):
    """The user for an error page's header; None when even that fails (the database may be
    what broke), so the error page itself never does."""
    try:
        return auth.current_user()
    except Exception:
        return None


if __name__ == '__main__':
    from sprig.cli import main  # which imports this file once more, as the module `app`
    sys.exit(main())
