"""A crontab task for the test of Huey's start-up check (`huey_consumer crontasks.huey`); apart
from testtasks, so that the other consumers of the suite have no crontab to check."""
import os
import time

from huey import crontab
from testtasks import huey, trace

__all__ = ['huey']


@huey.periodic_task(crontab(minute='*'))
def every_minute() -> None:
    trace('minutes', f'{os.getpid()} {time.time()}')
