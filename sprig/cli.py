"""The command line of `python app.py`.

    python app.py [serve] [--host H] [--port N] [--threads N] [--processes N] [--no-consumer]
    python app.py initdb | migrate | seed | ping [--timeout S]
    python app.py create-admin NAME [--password-stdin] [--mobile M] [--role admin|editor]
    python app.py backup PATH [--force]

`serve` creates missing tables and runs pending migrations, adds the demo data to an empty
database, then serves with Waitress and, unless --no-consumer, a Huey consumer in the same
process. With --processes N (or [app] processes), N web processes share the listening socket and
the consumer runs in their parent (sprig/serving/processes.py).
"""
import argparse
import contextlib
import functools
import getpass
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import peewee
from huey.exceptions import ResultTimeout

import app as web
import models
import tasks
from sprig import logs
from sprig.cache import aside
from sprig.cache.store import CacheError
from sprig.db.backup import backup as copy_database
from sprig.db.schema import MIGRATIONS, create_tables
from sprig.metrics import metrics
from sprig.queue import records
from sprig.queue.consumer import start_embedded_consumer
from sprig.queue.storage import QUEUE_ERRORS
from sprig.serving import processes
from sprig.serving.server import run_until_stopped, serving
from sprig.settings import Settings, masked, scheme
from sprig.shop import demo, keys
from sprig.shop.accounts import save_admin
from sprig.web.envelope import ApiError

log = logging.getLogger('sprig')


def serve(args: argparse.Namespace) -> int:
    settings = tasks.settings
    child = args.parent is not None  # one of the web processes of --processes N
    count = 1 if child else args.processes or settings.app.processes
    if (args.no_consumer or count > 1 or child) and scheme(settings.cache.url) == 'memory':
        return fail('[cache] url: memory:// cannot be shared with a separate consumer or other web '
                    'processes; use sqlite:/// or redis://')
    if not child:  # its parent prepared the database
        try:
            prepare_database()
        except peewee.DatabaseError as exc:
            return fail(f'database unavailable ({masked(settings.database.url)}): {exc}')
        metrics.forget_dead()
    host, port = args.host or settings.app.host, args.port or settings.app.port
    settings = replace(settings, app=replace(settings.app, host=host, port=port))  # public_url follows them
    if count > 1:
        tasks.configure(settings)  # the pool's parent runs the consumer, which builds absolute URLs
    try:
        run = serving(functools.partial(web.create_app, settings), settings, host, port, count,
                      args.threads or settings.app.threads, child)
    except OSError as exc:
        return fail(f'cannot listen on {host}:{port}: {exc.strerror}')
    consumer = None if args.no_consumer or child else start_embedded_consumer(tasks.huey)
    if child:
        processes.exit_with_parent(args.parent)
    else:
        print(banner(settings, host, port, consumer is not None, count), flush=True)
    try:
        run_until_stopped(run, consumer)
    except processes.PoolFailed as exc:
        return fail(str(exc))
    return 0


def banner(settings: Settings, host: str, port: int, embedded: bool, count: int) -> str:
    mode = f'embedded consumer, {settings.queue.workers} workers' if embedded else 'no consumer'
    web_processes = f' ({count} web processes)' if count > 1 else ''
    source = '[app] base_url' if settings.app.base_url else 'the address served; [app] base_url is empty'
    return (f'Sprig on http://{host}:{port}/{web_processes}\n'
            f'  public   {settings.app.public_url} ({source})\n'
            f'  database {masked(settings.database.url)}\n'
            f'  queue    {masked(settings.queue.url)} ({settings.queue.name}; {mode})\n'
            f'  cache    {masked(settings.cache.url)}\n'
            'Press Ctrl-C to stop.')


def prepare_database() -> None:
    create_tables()
    if models.is_empty() and (added := demo.seed()):
        log.info('empty database: %d demo rows added', added)


def initdb(args: argparse.Namespace) -> int:
    """Also `migrate`: both bring the database to the current schema."""
    try:
        ran = create_tables()
    except peewee.DatabaseError as exc:
        return fail(f'database unavailable ({masked(tasks.settings.database.url)}): {exc}')
    print(f'tables ready in {masked(tasks.settings.database.url)}: schema version {len(MIGRATIONS)}, '
          f'{ran} migration{"" if ran == 1 else "s"} run now')
    return 0


def seed(args: argparse.Namespace) -> int:
    try:
        create_tables()
        added = demo.seed()
    except peewee.DatabaseError as exc:
        return fail(f'database unavailable ({masked(tasks.settings.database.url)}): {exc}')
    with contextlib.suppress(CacheError):  # a running server may have cached the lists without them
        aside.drop(keys=[keys.BANNERS, keys.SALES], namespaces=[keys.CATALOGUE])
    print(f'demo data: {added} rows added')
    return 0


def backup(args: argparse.Namespace) -> int:
    target = Path(args.path).resolve()
    if target.exists() and not args.force:
        return fail(f'{target} exists; pass --force to replace it')
    try:
        size = copy_database(target)
    except (ValueError, peewee.DatabaseError, sqlite3.Error, OSError) as exc:
        return fail(f'backup failed: {exc}')
    print(f'backed up {masked(tasks.settings.database.url)} to {target} ({size // 1024} KB)')
    return 0


def create_admin(args: argparse.Namespace) -> int:
    create_tables()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip('\n')
    else:
        password = getpass.getpass('Password: ')
        if password != getpass.getpass('Repeat it: '):
            return fail('the passwords differ')
    try:
        created = save_admin(args.name, password, args.mobile, args.role)
    except ApiError as exc:
        problems = exc.payload.get('errors', {})
        return fail('; '.join(f'{field}: {message}' for field, message in problems.items()) or exc.body)
    print(f'{args.role} {args.name} {"created" if created else "updated"}')
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
    except QUEUE_ERRORS as exc:
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
    admin.add_argument('--role', choices=('admin', 'editor'), default='admin',
                       help='admin (everything, the default) or editor (banners, catalogue and sales)')
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
    logs.configure(tasks.settings.app.log_format, records.request_of)
    return COMMANDS[args.command](args)
