"""Tasks that exist only for the engine tests, registered on the real queue.

A consumer runs them with `huey_consumer testtasks.huey` (PYTHONPATH=tests); the test process
imports this module to enqueue them. Files under TESTTASKS_DIR let tasks leave traces.
"""
import enum
import os
import time
from pathlib import Path

from tasks import huey


def trace(name: str, line: str) -> None:
    with (Path(os.environ['TESTTASKS_DIR']) / name).open('a') as out:
        out.write(line + '\n')


@huey.task()
def add(a: int, b: int) -> int:
    return a + b


@huey.task()
def fail() -> None:
    raise ValueError('boom')


@huey.task(retries=2, retry_delay=1)
def flaky(name: str) -> str:
    """Fails on its first attempt only."""
    marker = Path(os.environ['TESTTASKS_DIR']) / name
    if not marker.exists():
        marker.touch()
        raise RuntimeError('first attempt fails')
    return 'second attempt'


@huey.task()
def fails_once(name: str) -> str:
    """Fails on its first run only, and has no retries of its own: only a retry by hand succeeds."""
    marker = Path(os.environ['TESTTASKS_DIR']) / name
    if not marker.exists():
        marker.touch()
        raise RuntimeError('first run fails')
    return 'second run'


@huey.task()
def nap(seconds: float) -> str:
    trace('naps', f'{os.getpid()} {time.time()}')
    time.sleep(seconds)
    return 'rested'


@huey.task(idempotent=True)
def safe_nap(seconds: float) -> str:
    trace('safe_naps', f'{os.getpid()} {time.time()}')
    time.sleep(seconds)
    return 'rested'


@huey.every(2)
def tick() -> None:
    trace('ticks', f'{os.getpid()} {time.time()}')


class Colour(enum.Enum):
    RED = 1


@huey.task()
def echo(value) -> str:
    """Any argument Huey can pickle; says what it got."""
    return repr(value)


@huey.task()
@huey.rate_limit('one-a-minute', 1, 60, retry=False)
def limited() -> str:
    return 'ran'


@huey.task()
@huey.lock_task('held-by-the-test')
def locked() -> str:
    return 'ran'


@huey.task(2, 1)  # Huey's positional retries, retry_delay
def positional() -> None:
    raise RuntimeError('always')


@huey.task(secret=('token',))
def fails_with_secret(token: str) -> None:
    """Fails, and its argument is a secret its record does not keep: it cannot be retried."""
    raise PermissionError('the token was refused')
