"""The benchmark's two tasks, registered on a Huey: Sprig's (bench/tasks.py) and bare Huey's
(bench/bare_huey_app.py) are the same code, so both do the same work per task."""
import os
import time


def register(huey) -> tuple:
    """(noop, clock) on huey: noop appends a byte to $BENCH_MARKS, which the producer counts."""
    marks = os.open(os.environ['BENCH_MARKS'], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @huey.task()
    def noop() -> None:
        os.write(marks, b'.')

    @huey.task()
    def clock() -> float:
        return time.time()

    return noop, clock
