"""Huey's own test suite (shipped in its package, huey/tests/) run on one Huey: plain Huey as the
control, or Sprig's, over Redis or SQLite. Run by tests/queue/test_huey_conformance.py:

    python tests/huey_suite.py plain|sprig redis|sqlite DATA_DIR REDIS_URL [TEST_ID,...]

Prints one JSON line: each test's id and outcome (passed, failed, error, skipped). Every test
gets a Huey of its own (a queue name of its own) from get_huey(); the suite's own Redis tests are
pointed at REDIS_URL with that name, and its SQLite tests at a file in DATA_DIR. Sprig's Huey has
its records on, in a SQLite database in DATA_DIR.
"""
import json
import os
import secrets
import sys
import unittest
from dataclasses import replace
from pathlib import Path

# The suite's modules that run on get_huey(); the others need other services (PostgreSQL, Django,
# peewee's own databases) or test only other storages.
MODULES = ['test_api', 'test_consumer', 'test_crontab', 'test_helpers', 'test_immediate', 'test_registry',
           'test_serializer', 'test_signals', 'test_utils', 'test_wrappers']
STORAGE_CLASSES = {'redis': 'TestRedisStorage', 'sqlite': 'TestSqliteStorage'}


def builder(kind: str, storage: str, data: Path, redis_url: str, run: str):
    """A function that makes a fresh Huey for one test, as the suite's get_huey() does (utc=False)."""
    count = iter(range(1_000_000))
    if kind == 'plain':
        from huey import Huey
        from huey.storage import RedisStorage, SqliteStorage

        from sprig.queue.storage import storage_options
        url = redis_url if storage == 'redis' else f'sqlite:///{data / "queue.db"}'
        options = storage_options(url)  # Sprig's connection options, Huey's own storage classes
        options['storage_class'] = RedisStorage if storage == 'redis' else SqliteStorage
        return lambda: Huey(f'conf{run}x{next(count)}', utc=False, **options)
    os.environ.update({'SPRIG_DATA_DIR': str(data), 'SPRIG_QUEUE_RECORDS': 'true'})
    if storage == 'redis':
        os.environ['SPRIG_QUEUE_URL'] = redis_url
    import tasks  # binds the records' database
    from sprig.db.schema import create_tables
    from sprig.queue.engine import SprigHuey
    create_tables()

    def sprig():
        settings = tasks.settings
        return SprigHuey(replace(settings, queue=replace(settings.queue, name=f'conf{run}x{next(count)}')), utc=False)
    return sprig


def suite(make_huey, storage: str, only: set[str]) -> unittest.TestSuite:
    from huey.tests import base, test_storage

    base.BaseTestCase.get_huey = lambda self: make_huey()
    stop = base.BaseTestCase.tearDown

    def tear_down(self):
        writer = getattr(self.huey, 'writer', None)
        if writer is not None:
            writer.stop()  # each test's Huey has its record writer: stop its thread
        stop(self)
    base.BaseTestCase.tearDown = tear_down
    loader = unittest.TestLoader()
    tests = unittest.TestSuite(loader.loadTestsFromName(f'huey.tests.{name}') for name in MODULES)
    storage_tests = getattr(test_storage, STORAGE_CLASSES[storage])
    ours = type(storage_tests.__name__, (storage_tests,), {'get_huey': lambda self: make_huey()})
    tests.addTests(loader.loadTestsFromTestCase(ours))
    return unittest.TestSuite(test for test in flat(tests) if not only or Outcomes.key(test) in only)


def flat(tests: unittest.TestSuite):
    for test in tests:
        yield from flat(test) if isinstance(test, unittest.TestSuite) else (test,)


class Outcomes(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcomes: dict[str, str] = {}

    @staticmethod
    def key(test) -> str:
        return test.id().removeprefix('huey.tests.').removeprefix('__main__.')

    def addSuccess(self, test):
        self.outcomes[self.key(test)] = 'passed'

    def addFailure(self, test, err):
        self.outcomes[self.key(test)] = 'failed'

    def addError(self, test, err):
        self.outcomes[self.key(test)] = 'error'

    def addSkip(self, test, reason):
        self.outcomes[self.key(test)] = 'skipped'


def main() -> None:
    kind, storage, data, redis_url = sys.argv[1:5]
    only = set(sys.argv[5].split(',')) if len(sys.argv) > 5 else set()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.chdir(data)  # the suite writes some SQLite files of its own in the working directory
    result = Outcomes()
    run = secrets.token_hex(3)
    suite(builder(kind, storage, Path(data), redis_url, run), storage, only).run(result)
    if storage == 'redis':
        forget(redis_url, run)
    print(json.dumps(result.outcomes))


def forget(redis_url: str, run: str) -> None:
    """Delete every key of this run's queues (and nothing else)."""
    import redis
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f'*conf{run}x*'))
    if keys:
        client.delete(*keys)


if __name__ == '__main__':
    main()
