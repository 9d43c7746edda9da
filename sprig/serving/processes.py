"""Several web processes on one listening socket: `python app.py --processes N`.

Python runs one thread at a time per process, so one Waitress process uses one core however
many threads it has. Here the parent holds the address and starts N children, `python app.py
serve --parent PID`, each listening on it with SO_REUSEPORT (the kernel hands each connection to one
of them). The parent serves nothing itself: it runs the embedded consumer, if any, starts a
child again should one die, and stops them all on SIGINT or SIGTERM.
"""
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from sprig.settings import PROJECT_DIR

log = logging.getLogger('sprig.processes')
APP = PROJECT_DIR / 'app.py'
EARLY_EXIT = 5.0  # seconds: a child that fails this soon after its start would only fail again
STOP_TIMEOUT = 10.0  # seconds children get to finish their requests before SIGKILL


class PoolFailed(Exception):
    """A web process could not start."""


def resolve(host: str, port: int) -> tuple:
    """The first address `host` names (the parent's and every child's, which get it numeric)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]


def bind(host: str, port: int, *options: int) -> socket.socket:
    """A socket bound to the address, with SO_REUSEADDR (a restart is not refused over the last
    run's connections in TIME_WAIT; a listener still refuses it) and the given options."""
    family, kind, proto, _, address = resolve(host, port)
    sock = socket.socket(family, kind, proto)
    for option in (socket.SO_REUSEADDR, *options):
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    sock.bind(address)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The parent's hold on the address: bound with SO_REUSEPORT but not listening, so that only
    the children's sockets (see listen) take connections, which the kernel spreads evenly over
    them; one shared listening socket gave 38 and 26 of 64 connections to two children."""
    bind(host, port).close()  # refused while anything listens there, another pool of ours too
    return bind(host, port, socket.SO_REUSEPORT)


def listen(host: str, port: int) -> socket.socket:
    """A child's own listening socket on the parent's address."""
    sock = bind(host, port, socket.SO_REUSEPORT)
    sock.listen(1024)
    return sock


class Pool:
    """The web processes, kept at `size` until stopped."""

    def __init__(self, host: str, port: int, size: int, threads: int):
        self.sock = reserve(host, port)
        self.host = self.sock.getsockname()[0]  # numeric: every child binds the very same address
        self.port, self.size, self.threads = port, size, threads
        self.children: list[tuple[subprocess.Popen, float]] = []  # (process, started at)

    def spawn(self) -> tuple[subprocess.Popen, float]:
        args = [sys.executable, str(APP), 'serve', '--parent', str(os.getpid()), '--host', self.host,
                '--port', str(self.port), '--threads', str(self.threads)]
        # Its own session: a Ctrl-C in the terminal reaches the parent, which stops the children.
        child = subprocess.Popen(args, start_new_session=True)
        return child, time.monotonic()

    def run(self) -> None:
        """Serve until interrupted (KeyboardInterrupt), then stop every child.

        :raise PoolFailed: when a child fails within EARLY_EXIT seconds of its start.
        """
        try:
            self.children = [self.spawn() for _ in range(self.size)]
            while True:
                time.sleep(0.5)
                self.children = [self.check(child, started) for child, started in self.children]
        finally:
            self.stop()
            self.sock.close()

    def check(self, child: subprocess.Popen, started: float) -> tuple[subprocess.Popen, float]:
        if child.poll() is None:
            return child, started
        if child.returncode > 0 and time.monotonic() - started < EARLY_EXIT:  # a failure, not a kill
            raise PoolFailed(f'web process {child.pid} exited with {child.returncode} as it started')
        log.warning('web process %d exited with %s; starting another', child.pid, child.returncode)
        return self.spawn()

    def stop(self) -> None:
        for child, _ in self.children:
            if child.poll() is None:
                # A child serving stops gracefully on SIGTERM, as on SIGINT; one still starting
                # dies quietly, where SIGINT would print a KeyboardInterrupt's traceback.
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child, _ in self.children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def exit_with_parent(parent: int) -> None:
    """In a child: stop (gracefully, SIGTERM) once the parent is gone, even if it was SIGKILLed,
    and even before this child got here: its pid comes from the command line."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name='ParentWatch', daemon=True).start()
