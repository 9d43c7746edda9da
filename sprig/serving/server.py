"""Serving with Waitress: the server, the stop signals, and the embedded consumer's life beside it.

`python app.py` serves here (sprig.cli.serve): one Waitress server in this process, or with
--processes N a pool of web processes (processes.py) while this one runs the consumer.
"""
import contextlib
import gc
import logging
import signal
from collections.abc import Callable

import waitress
from bottle import Bottle

from sprig.queue.consumer import EmbeddedConsumer, stop_embedded_consumer
from sprig.serving import processes
from sprig.settings import Settings

log = logging.getLogger('sprig.server')


def serving(app: Callable[[], Bottle], settings: Settings, host: str, port: int, count: int, threads: int,
            child: bool) -> Callable[[], None]:
    """What serves: a pool of `count` web processes, or this process's own Waitress server for
    the app that app() builds.

    :raise OSError: the address cannot be had.
    """
    if count > 1:
        return processes.Pool(host, port, count, threads).run
    where = {'sockets': [processes.listen(host, port)]} if child else {'host': host, 'port': port}
    return make_server(app(), settings, threads, where).run


def make_server(app: Bottle, settings: Settings, threads: int, where: dict) -> waitress.server.BaseWSGIServer:
    """A Waitress server for app, listening `where` (host and port, or sockets)."""
    return waitress.create_server(
        app, threads=threads,
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


def run_until_stopped(run: Callable[[], None], consumer: EmbeddedConsumer | None) -> None:
    """Serve until SIGINT or SIGTERM, then stop the consumer.

    :raise processes.PoolFailed: a web process could not start.
    """
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
    finally:
        stop(consumer)


def stop_once(signum: int, frame) -> None:
    """Signal handler: stop as on Ctrl-C, and ignore every stop signal after this one."""
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop(consumer: EmbeddedConsumer | None) -> None:
    log.info('stopping')
    if consumer is not None:
        # Waits up to [queue] shutdown_timeout for running tasks; a second Ctrl-C cuts it short.
        with contextlib.suppress(KeyboardInterrupt):
            stop_embedded_consumer(consumer)
    log.info('stopped')
