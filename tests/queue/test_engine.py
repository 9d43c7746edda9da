"""The task engine with real huey_consumer processes: records, schedules, one leader, lost tasks.

Consumers run `huey_consumer testtasks.huey` (tests/testtasks.py: the real queue plus a few tasks
for tests); this process enqueues through the same module, on the same queue and database.
"""
import datetime
import os
import signal
import time

import pytest
import testtasks
from conftest import Engine, engine_env, make_settings, record, wait_state, wait_until

import tasks
from models import Lease, database
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


@pytest.fixture(params=['sqlite', 'redis'])
def engine(request, tmp_path, spawn, unique):
    env = engine_env(request.param, request, unique)
    tasks.configure(make_settings(tmp_path, **env))
    create_tables()
    yield Engine({**env, 'TESTTASKS_DIR': str(tmp_path), 'PYTHONPATH': str(PROJECT_DIR / 'tests')},
                 tmp_path, spawn)
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def test_records_follow_every_kind_of_task(engine):
    expiring = testtasks.add(1, 1, expires=1)  # no consumer yet: it expires in the queue
    time.sleep(1.5)
    consumer = engine.consumer('consumer')
    assert wait_state(expiring.id, 'expired')[0].finished_at is not None

    ok, seen = wait_state(testtasks.add(2, 3).id, 'succeeded')
    assert ok.result == '5' and ok.started_at <= ok.finished_at and ok.consumer.split(':')[1] == str(consumer.pid)

    failed, _ = wait_state(testtasks.fail().id, 'failed')
    assert failed.error == 'ValueError: boom' and failed.retries == 0

    flaky, seen = wait_state(testtasks.flaky('flaky-marker').id, 'succeeded')
    assert 'retrying' in seen and flaky.retries == 1 and flaky.result == '"second attempt"'

    delayed = testtasks.add.schedule((4, 4), delay=2)
    assert record(delayed.id).state == 'scheduled' and record(delayed.id).eta is not None
    done, seen = wait_state(delayed.id, 'succeeded')
    assert done.started_at >= done.eta - datetime.timedelta(seconds=0.1)

    revoked = testtasks.add.schedule((5, 5), delay=2)
    revoked.revoke()
    assert wait_state(revoked.id, 'revoked')[0].started_at is None
    assert record('no-such-task') is None
    assert consumer.stop() == 0


@pytest.mark.parametrize('engine', ['redis'], indirect=True)
def test_interval_runs_once_per_period_with_two_consumers_and_survives_its_leader(engine):
    first, second = engine.consumer('first'), engine.consumer('second')
    start = wait_until(lambda: engine.traces('ticks'), 15, 'no tick')[0][1]
    time.sleep(max(0.0, start + 10.5 - time.time()))
    ticks = [at for _, at in engine.traces('ticks') if start <= at < start + 10]
    assert 4 <= len(ticks) <= 6, ticks  # every 2 s, not once per consumer (that would be 9-11)

    with database.connection_context():
        holder = Lease.get_by_id('scheduler').holder
    leader = first if holder.split(':')[1] == str(first.pid) else second
    survivor = second if leader is first else first
    os.kill(leader.pid, signal.SIGKILL)
    killed_at = time.time()
    resumed = wait_until(lambda: [at for _, at in engine.traces('ticks') if at > killed_at + 0.5], 15,
                         'no tick after the leader died')
    assert resumed[0] - killed_at < 10
    with database.connection_context():
        assert Lease.get_by_id('scheduler').holder.split(':')[1] == str(survivor.pid)


def kill_while_running(engine: Engine, enqueue) -> tuple:
    """Enqueue a task, SIGKILL its consumer once the task runs, start another; (task, dead, rescuer)."""
    doomed = engine.consumer('doomed')
    task = enqueue()
    wait_state(task.id, 'started')
    os.kill(doomed.pid, signal.SIGKILL)
    return task, doomed, engine.consumer('rescuer')


@pytest.mark.parametrize('engine', ['sqlite'], indirect=True)
def test_a_task_whose_consumer_dies_is_marked_lost(engine):
    task, _, _ = kill_while_running(engine, lambda: testtasks.nap(30))
    lost, _ = wait_state(task.id, 'lost', timeout=30)
    assert 'died' in lost.error and lost.finished_at is not None


@pytest.mark.parametrize('engine', ['sqlite'], indirect=True)
def test_an_idempotent_task_whose_consumer_dies_runs_again(engine):
    task, doomed, rescuer = kill_while_running(engine, lambda: testtasks.safe_nap(3))
    done, _ = wait_state(task.id, 'succeeded', timeout=40)
    assert done.requeued and done.consumer.split(':')[1] == str(rescuer.pid)
    assert [pid for pid, _ in engine.traces('safe_naps')] == [doomed.pid, rescuer.pid]


@pytest.mark.parametrize('engine', ['sqlite'], indirect=True)
def test_sigterm_stops_gracefully_and_settles_what_still_runs(engine):
    consumer = engine.consumer('consumer')
    quick, slow, safe = testtasks.nap(0.5), testtasks.nap(30), testtasks.safe_nap(30)
    for task in (quick, slow, safe):
        wait_state(task.id, 'started', 'succeeded')
    assert consumer.stop(signal.SIGTERM, timeout=15) == 0  # waits shutdown_timeout = 2 s
    assert record(quick.id).state == 'succeeded'
    assert record(slow.id).state == 'lost' and 'shutdown' in record(slow.id).error
    assert record(safe.id).state == 'queued'  # back in the queue for the next consumer
