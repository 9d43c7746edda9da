"""Serving with Waitress: the server, the stop signals, and the embedded consumer's life beside it.

`python app.py` serves here (sprig.cli.serve): one Waitress server in this process, or with
--processes N a pool of web processes (processes.py) while this one runs the consumer.
"""
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable

from bottle import Bottle
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

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


class GuardedChannel(HTTPChannel):
    """Waitress's channel, knowing since when its current request has been arriving."""

    arriving: object = None  # the parser of the request that is arriving, if any
    arriving_since = 0.0

    def received(self, data):
        result = super().received(data)
        if self.request is None:
            self.arriving = None
        elif self.request is not self.arriving:
            self.arriving, self.arriving_since = self.request, time.monotonic()
        return result


class GuardedServer(TcpWSGIServer):
    """Waitress's server, cutting off a client that takes longer than `request_timeout` seconds
    to send one whole request: slow clients (one header line every few seconds) would otherwise
    hold connections for as long as they like, and Waitress stops accepting at its limit."""

    channel_class = GuardedChannel
    request_timeout = 15.0

    def maintenance(self, now):
        super().maintenance(now)
        cutoff = time.monotonic() - self.request_timeout
        for channel in list(self.active_channels.values()):
            if channel.arriving is not None and channel.arriving_since < cutoff:
                channel.will_close = True


def make_server(app: Bottle, settings: Settings, threads: int, where: dict) -> GuardedServer:
    """A Waitress server for app, listening `where` (host and port, or one socket)."""
    options = settings.app
    adj = Adjustments(
        threads=threads,
        # Waitress buffers bodies before the app sees them (to disk past 512 KB); this bounds
        # that buffer. The app's own JSON 413 answers everything below it.
        max_request_body_size=max(64 * options.max_body_kb * 1024, 16 * 1024 * 1024),
        connection_limit=options.connection_limit, channel_timeout=options.idle_timeout,
        cleanup_interval=1,  # how often slow and idle connections are looked for
        asyncore_use_poll=True,  # select() cannot watch more than 1,024 sockets
        **proxy_options(options.trusted_proxy), **where)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    if adj.sockets:
        sock = adj.sockets[0]
        server = GuardedServer(app, {}, True, sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                               sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
    else:
        server = GuardedServer(app, {}, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0])
    server.request_timeout = options.request_timeout
    return server


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
