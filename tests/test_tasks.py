"""Tasks on a real (non-immediate) queue: each task's database connection is its own."""
import threading

import pytest
from conftest import make_settings

import models
import tasks
from models import database


@pytest.fixture
def queue(tmp_path):
    tasks.configure(make_settings(tmp_path))  # a SQLite queue, not immediate
    models.create_tables()
    yield tasks.huey
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_a_task_closes_the_connection_it_opened(queue):
    @queue.task()
    def count_one() -> int:
        return database.execute_sql('SELECT 1').fetchone()[0]

    after = {}

    def worker():  # what a consumer thread does with a dequeued task
        task = queue.dequeue()
        after['value'] = queue.execute(task)
        after['closed'] = database.is_closed()

    result = count_one()
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert after == {'value': 1, 'closed': True}
    assert result.get() == 1


def test_immediate_mode_leaves_the_callers_connection_open(settings):
    tasks.configure(settings)

    @tasks.huey.task()
    def count_two() -> int:
        return database.execute_sql('SELECT 2').fetchone()[0]

    with database.connection_context():
        assert count_two().get() == 2
        assert not database.is_closed()
