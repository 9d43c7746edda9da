"""Sprig's web app and command line.

    python app.py [serve] [--host H] [--port N] [--threads N] [--processes N] [--no-consumer]
    python app.py initdb | migrate | seed | ping [--timeout S]
    python app.py create-admin NAME [--password-stdin] [--mobile M]
    python app.py backup PATH [--force]
    waitress-serve --host 127.0.0.1 --port 8080 --call app:make_app

create_app(settings) builds the Bottle app. Importing this module starts no server and no
consumer; it does read the settings and open the queue and cache files (via tasks). `serve`
creates missing tables and runs pending migrations, adds the demo data to an empty database,
then serves with Waitress and, unless
--no-consumer, a Huey consumer in the same process. With --processes N (or [app] processes),
N web processes share the listening socket and the consumer runs in their parent (workers.py).
"""
import argparse
import contextlib
import functools
import gc
import getpass
import logging
import re
import secrets
import signal
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import peewee
import waitress
from bottle import Bottle, HTTPError, HTTPResponse, JSONPlugin, request, response
from huey.exceptions import ResultTimeout
from jinja2 import Environment

import banners
import cached
import courses
import demo
import models
import seckill
import tasks
import workers
from api import ApiError, Doc, ok, to_json
from auth import Auth
from banner_api import install_banner_api
from cache import CacheError, cache
from course_api import install_course_api
from models import database
from pages import create_env, install_pages
from queue_api import install_queue_api
from seckill_api import install_seckill_api
from settings import Settings, masked, scheme
from users import UserApi, save_admin

log = logging.getLogger('sprig')
access_log = logging.getLogger('sprig.access')
REQUEST_ID = re.compile(r'^[A-Za-z0-9._-]{1,64}$')


def create_app(settings: Settings) -> Bottle:
    """The WSGI app for `settings`; also binds the database, queue and cache to them."""
    tasks.configure(settings)
    app = Bottle()
    # <id:int> in a route takes 1 to 15 digits: a longer number (which no row has) is a 404, not
    # an overflow in the database driver (found by fuzzing).
    app.router.add_filter('int', lambda config: (r'\d{1,15}', int, str))
    app.uninstall('json')  # put back below, inside the guard and able to encode dates
    app.install(guard)
    app.install(JSONPlugin(json_dumps=to_json))
    env = create_env(settings)
    auth = Auth(settings)
    app.default_error_handler = functools.partial(render_error, env, auth, settings.app.debug)
    app.add_hook('before_request', functools.partial(start_request, settings.app.max_body_kb * 1024))
    app.add_hook('after_request', functools.partial(finish_request, security_headers(settings)))
    install_health(app)
    UserApi(settings, auth).install(app)
    install_queue_api(app, auth)
    install_banner_api(app, settings, auth)
    install_course_api(app, settings, auth)
    install_seckill_api(app, settings, auth)
    install_pages(app, env, settings, auth)
    return app


def make_app() -> Bottle:
    """Factory for `waitress-serve --call app:make_app`: the app from config.ini and SPRIG_*.

    Creates missing tables, but adds no demo data: that is `python app.py seed`'s choice.
    """
    app = create_app(tasks.settings)
    models.create_tables()
    return app


def start_request(limit: int) -> None:
    given = request.get_header('X-Request-ID', '')
    request.environ['sprig.request_id'] = given if REQUEST_ID.match(given) else secrets.token_hex(8)
    request.environ['sprig.started'] = time.perf_counter()
    # The declared length is refused before anything reads the body; api.json_body also
    # stops reading at the limit for bodies sent without one.
    if request.content_length > limit:
        raise ApiError(413, f'request body too large (limit {limit // 1024} KB)')


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers for every answer: only our own scripts and styles run, nobody frames our pages.
    Images may also come from https (a banner may name a CDN); inline code never runs, and none
    of our pages has any."""
    site = urlsplit(settings.app.base_url)
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
    return headers


def finish_request(headers: dict[str, str]) -> None:
    # Peewee opens a connection on a request's first query (autoconnect); this gives it back,
    # and runs even when the route raised.
    if not database.is_closed():
        database.close()
    for name, value in headers.items():
        response.set_header(name, value)
    request_id = request.environ.get('sprig.request_id', '-')
    response.set_header('X-Request-ID', request_id)
    if access_log.isEnabledFor(logging.INFO):  # the line's parts cost more than the check
        elapsed = (time.perf_counter() - request.environ.get('sprig.started', time.perf_counter())) * 1000
        access_log.info('%s %s %s %.1fms id=%s', request.method, request.fullpath,
                        response.status_code, elapsed, request_id)


def failed_component(exc: Exception) -> str | None:
    """Which dependency an exception says is down, if any."""
    if isinstance(exc, (peewee.OperationalError, peewee.InterfaceError)):
        return 'database'
    if isinstance(exc, CacheError):
        return 'cache'
    if isinstance(exc, tasks.QUEUE_ERRORS):
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
    if request.path.startswith('/api/'):
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


def check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'.strip()
    return 'ok'


def install_health(app: Bottle) -> None:
    probes = {
        'database': lambda: database.execute_sql('SELECT 1').fetchone(),
        'queue': lambda: tasks.huey.pending_count(),
        'cache': cache.ping,
    }

    @app.get('/api/v1/health', doc=Doc('Database, queue and cache checked; 503 names what is down'))
    def health() -> dict:
        components = {name: check(probe) for name, probe in probes.items()}
        down = sorted(name for name, state in components.items() if state != 'ok')
        if down:
            raise ApiError(503, f'unavailable: {", ".join(down)}', components=components)
        return ok(components=components)


# Command line ---------------------------------------------------------------------------------

def serve(args: argparse.Namespace) -> int:
    settings = tasks.settings
    child = args.parent is not None  # one of the web processes of --processes N
    processes = 1 if child else args.processes or settings.app.processes
    if (args.no_consumer or processes > 1 or child) and scheme(settings.cache.url) == 'memory':
        return fail('[cache] url: memory:// cannot be shared with a separate consumer or other web '
                    'processes; use sqlite:/// or redis://')
    if not child:  # its parent prepared the database
        try:
            prepare_database()
        except peewee.DatabaseError as exc:
            return fail(f'database unavailable ({masked(settings.database.url)}): {exc}')
    host, port = args.host or settings.app.host, args.port or settings.app.port
    try:
        run = serving(settings, host, port, processes, args.threads or settings.app.threads, child)
    except OSError as exc:
        return fail(f'cannot listen on {host}:{port}: {exc.strerror}')
    consumer = None if args.no_consumer or child else tasks.start_embedded_consumer()
    if child:
        workers.exit_with_parent(args.parent)
    else:
        print(banner(settings, host, port, consumer is not None, processes), flush=True)
    return run_until_stopped(run, consumer)


def serving(settings: Settings, host: str, port: int, processes: int, threads: int,
            child: bool) -> Callable[[], None]:
    """What serves: a pool of web processes, or this process's own Waitress server.

    :raise OSError: the address cannot be had.
    """
    if processes > 1:
        return workers.Pool(host, port, processes, threads).run
    where = {'sockets': [workers.listen(host, port)]} if child else {'host': host, 'port': port}
    return make_server(settings, threads, where).run


def run_until_stopped(run: Callable[[], None], consumer: tasks.EmbeddedConsumer | None) -> int:
    # What start-up made lives as long as the process: out of the collector's way, a full
    # collection during a flash sale took 31-38 ms per web process, a stall for every request.
    gc.collect()
    gc.freeze()
    # Both stop like Ctrl-C, also when started in the background, which leaves SIGINT ignored.
    # With a consumer a second one cuts its wait for running tasks short; without, later ones
    # are ignored: systemd signals every process of a pool, which its parent signals again, and
    # a second KeyboardInterrupt would cut short Waitress's wait for the requests in flight.
    handler = signal.default_int_handler if consumer else stop_once
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    try:
        run()  # returns on KeyboardInterrupt, after closing the listener and answering what came
    except KeyboardInterrupt:
        pass
    except workers.PoolFailed as exc:
        return fail(str(exc))
    finally:
        stop(consumer)
    return 0


def stop_once(signum: int, frame) -> None:
    """Signal handler: stop as on Ctrl-C, and ignore every stop signal after this one."""
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise KeyboardInterrupt


def make_server(settings: Settings, threads: int, where: dict) -> waitress.server.BaseWSGIServer:
    """A Waitress server for the app, listening `where` (host and port, or sockets)."""
    return waitress.create_server(
        create_app(settings), threads=threads,
        # Waitress buffers bodies before the app sees them (to disk past 512 KB); this bounds
        # that buffer. The app's own JSON 413 answers everything below it.
        max_request_body_size=max(64 * settings.app.max_body_kb * 1024, 16 * 1024 * 1024),
        **proxy_options(settings.app.trusted_proxy), **where)


def proxy_options(proxy: str) -> dict:
    """Waitress options that make REMOTE_ADDR the client's when a trusted proxy forwards it."""
    if not proxy:
        return {}
    return {'trusted_proxy': proxy, 'trusted_proxy_headers': 'x-forwarded-for',
            'clear_untrusted_proxy_headers': True}


def stop(consumer: tasks.EmbeddedConsumer | None) -> None:
    log.info('stopping')
    if consumer is not None:
        # Waits up to [queue] shutdown_timeout for running tasks; a second Ctrl-C cuts it short.
        with contextlib.suppress(KeyboardInterrupt):
            tasks.stop_embedded_consumer(consumer)
    log.info('stopped')


def banner(settings: Settings, host: str, port: int, embedded: bool, processes: int) -> str:
    mode = f'embedded consumer, {settings.queue.workers} workers' if embedded else 'no consumer'
    web = f' ({processes} web processes)' if processes > 1 else ''
    return (f'Sprig on http://{host}:{port}/{web}\n'
            f'  database {masked(settings.database.url)}\n'
            f'  queue    {masked(settings.queue.url)} ({settings.queue.name}; {mode})\n'
            f'  cache    {masked(settings.cache.url)}\n'
            'Press Ctrl-C to stop.')


def prepare_database() -> None:
    models.create_tables()
    if models.is_empty() and (added := demo.seed()):
        log.info('empty database: %d demo rows added', added)


def initdb(args: argparse.Namespace) -> int:
    """Also `migrate`: both bring the database to the current schema."""
    try:
        ran = models.create_tables()
    except peewee.DatabaseError as exc:
        return fail(f'database unavailable ({masked(tasks.settings.database.url)}): {exc}')
    print(f'tables ready in {masked(tasks.settings.database.url)}: schema version {len(models.MIGRATIONS)}, '
          f'{ran} migration{"" if ran == 1 else "s"} run now')
    return 0


def seed(args: argparse.Namespace) -> int:
    try:
        models.create_tables()
        added = demo.seed()
    except peewee.DatabaseError as exc:
        return fail(f'database unavailable ({masked(tasks.settings.database.url)}): {exc}')
    with contextlib.suppress(CacheError):  # a running server may have cached the lists without them
        cached.drop(keys=[banners.KEY, seckill.SALES_KEY], namespaces=[courses.NAMESPACE])
    print(f'demo data: {added} rows added')
    return 0


def backup(args: argparse.Namespace) -> int:
    target = Path(args.path).resolve()
    if target.exists() and not args.force:
        return fail(f'{target} exists; pass --force to replace it')
    try:
        size = models.backup(target)
    except (ValueError, peewee.DatabaseError, sqlite3.Error, OSError) as exc:
        return fail(f'backup failed: {exc}')
    print(f'backed up {masked(tasks.settings.database.url)} to {target} ({size // 1024} KB)')
    return 0


def create_admin(args: argparse.Namespace) -> int:
    tasks.configure(tasks.settings)
    models.create_tables()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip('\n')
    else:
        password = getpass.getpass('Password: ')
        if password != getpass.getpass('Repeat it: '):
            return fail('the passwords differ')
    try:
        created = save_admin(args.name, password, args.mobile)
    except ApiError as exc:
        problems = exc.payload.get('errors', {})
        return fail('; '.join(f'{field}: {message}' for field, message in problems.items()) or exc.body)
    print(f'admin {args.name} {"created" if created else "updated"}')
    return 0


def ping(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        result = tasks.ping(time.time())
        reply = result.get(blocking=True, timeout=args.timeout, backoff=1.05, max_delay=0.05)
    except ResultTimeout:
        result.revoke()  # nobody should run it later
        return fail(f'no consumer answered within {args.timeout:g} s '
                    f'(queue {tasks.settings.queue.name} on {masked(tasks.settings.queue.url)})')
    except tasks.QUEUE_ERRORS as exc:
        return fail(f'queue unavailable: {exc}')
    elapsed = (time.perf_counter() - started) * 1000
    print(f'pong from {reply["host"]} pid {reply["pid"]} in {elapsed:.1f} ms')
    return 0


def fail(message: str) -> int:
    print(f'sprig: {message}', file=sys.stderr)
    return 1


def whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from low to high, as config.ini's own limits."""
    def convert(text: str) -> int:
        number = int(text)
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f'{number} is out of range ({low} to {high})')
        return number
    return convert


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='app.py', description='Sprig course shop')
    commands = parser.add_subparsers(dest='command')
    run = commands.add_parser('serve', help='serve the site (the default command)')
    run.add_argument('--host', help='address to listen on (default [app] host)')
    run.add_argument('--port', type=int, help='port to listen on (default [app] port)')
    run.add_argument('--threads', type=whole(1, 256), help='Waitress threads (default [app] threads)')
    run.add_argument('--processes', type=whole(1, 64), help='web processes (default [app] processes)')
    run.add_argument('--parent', type=int, help=argparse.SUPPRESS)  # the pid of a --processes N parent
    run.add_argument('--no-consumer', action='store_true',
                     help='do not run tasks here; a huey_consumer process runs them')
    commands.add_parser('initdb', help='create missing tables and run pending migrations')
    commands.add_parser('migrate', help='the same as initdb (serve does it too)')
    commands.add_parser('seed', help='add the demo data')
    admin = commands.add_parser('create-admin', help='create an admin, or make a user one')
    admin.add_argument('name', help='username (5-20 letters, digits or _)')
    admin.add_argument('--password-stdin', action='store_true', help='read the password from stdin')
    admin.add_argument('--mobile', help='mobile number, for SMS sign-in')
    copy = commands.add_parser('backup', help='copy the SQLite database while the site runs')
    copy.add_argument('path', help='file to write the copy to')
    copy.add_argument('--force', action='store_true', help='replace the file if it exists')
    check_queue = commands.add_parser('ping', help='check that a consumer runs tasks')
    check_queue.add_argument('--timeout', type=float, default=10.0, help='seconds to wait (10)')
    if not argv or argv[0].startswith('-') and argv[0] not in ('-h', '--help'):
        argv = ['serve', *argv]  # `python app.py --port N` means serve
    return parser.parse_args(argv)


COMMANDS = {'serve': serve, 'initdb': initdb, 'migrate': initdb, 'seed': seed, 'create-admin': create_admin,
            'ping': ping, 'backup': backup}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    return COMMANDS[args.command](args)


if __name__ == '__main__':
    sys.exit(main())
