"""A web process killed (SIGKILL) between a press's claim and its enqueue: the seat is given back
within seconds by the leader consumer, and the buyer may press again. On the embedded SQLite cache
and on Redis, with a real huey_consumer."""
import signal
import subprocess
import time

import pytest
from conftest import (
    PROJECT_DIR,
    SECRET,
    free_port,
    huey_consumer,
    make_settings,
    open_sale,
    process_env,
    python,
    wait_until,
)
from test_faults import start_redis

import tasks
from models import User, database
from sprig.cache.store import CacheError, cache
from sprig.queue.storage import QUEUE_ERRORS
from sprig.shop import seckill

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

# A press's first step, then the process dies before its enqueue, as a SIGKILL at that moment
# would leave it.
CLAIM_THEN_DIE = """
import os, signal, sys
import tasks
from models import User
from sprig.shop import seckill
sale = seckill.sale(int(sys.argv[1]), tasks.settings)
print(seckill.claim(sale, User.get_by_id(int(sys.argv[2])), tasks.settings), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(params=['sqlite', 'redis'])
def shop(request, tmp_path, unique):
    env = {'SPRIG_APP_SECRET_KEY': SECRET}
    if request.param == 'redis':
        url = request.getfixturevalue('redis_url')
        request.getfixturevalue('redis_prefix')
        env |= {'SPRIG_QUEUE_URL': url, 'SPRIG_CACHE_URL': url, 'SPRIG_QUEUE_NAME': unique,
                'SPRIG_CACHE_PREFIX': f'{unique}:'}
    _, item_id = open_sale(tmp_path, users=2, stock=5, **{k: v for k, v in env.items() if k != 'SPRIG_APP_SECRET_KEY'})
    yield env, item_id
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def stock_counter(item_id: int) -> int:
    return cache.get(seckill.counter_key(item_id))


def test_a_claim_whose_process_died_before_its_enqueue_goes_back(shop, tmp_path, spawn):
    env, item_id = shop
    with database.connection_context():
        buyer = User.select().first().id
    died = subprocess.run(python('-c', CLAIM_THEN_DIE, str(item_id), str(buyer)), cwd=PROJECT_DIR,
                          env=process_env(tmp_path, **env), capture_output=True, text=True, timeout=60)
    assert died.returncode == -signal.SIGKILL and died.stdout.strip() == 'claimed', died.stderr
    tasks.configure(make_settings(tmp_path, **env))
    assert stock_counter(item_id) == 4 and cache.get(seckill.marker_key(item_id, buyer)) is not None
    started = time.monotonic()
    consumer = spawn(huey_consumer('-w', '2', '-k', 'thread', '-m', '1'), process_env(tmp_path, **env), 'consumer')
    wait_until(lambda: cache.get(seckill.marker_key(item_id, buyer)) is None, 30, 'the claim never went back',
               consumer.stderr)
    assert time.monotonic() - started < seckill.CLAIM_GRACE + 15
    assert stock_counter(item_id) == 5
    with database.connection_context():
        sale = seckill.sale(item_id, tasks.settings)
        assert seckill.claim(sale, User.get_by_id(buyer), tasks.settings) == 'claimed'  # may press again
    assert 'its seat went back' in consumer.stderr()


def test_a_claim_backed_by_its_task_or_order_stays(shop, tmp_path):
    env, item_id = shop
    tasks.configure(make_settings(tmp_path, **env))
    with database.connection_context():
        first, second = [user.id for user in User.select().order_by(User.id)]
        sale = seckill.sale(item_id, tasks.settings)
        for user in (first, second):
            assert seckill.claim(sale, User.get_by_id(user), tasks.settings) == 'claimed'
        tasks.create_order.s(first, item_id)  # not enqueued: nothing backs the first claim
        queued = tasks.huey.enqueue(tasks.create_order.s(second, item_id))  # the second's task waits
        tasks.huey.writer.flush()
        for user in (first, second):  # both claims older than the grace
            cache.set(seckill.marker_key(item_id, user), time.time() - seckill.CLAIM_GRACE - 1, ttl=3600)
        assert seckill.reconcile_claims() == 1
        assert cache.get(seckill.marker_key(item_id, first)) is None
        assert cache.get(seckill.marker_key(item_id, second)) is not None and queued.id
        assert stock_counter(item_id) == 4


def test_a_claim_caught_by_redis_going_down_goes_back_once_it_returns(tmp_path, spawn):
    """Redis (appendonly, fsync always) killed between the claim and the enqueue: the enqueue and
    the release both fail; the claim comes back from the append-only file with Redis."""
    port = free_port()
    redis_server = start_redis(spawn, tmp_path / 'redis', port)
    url = f'redis://127.0.0.1:{port}/0'
    env = {'SPRIG_QUEUE_URL': url, 'SPRIG_CACHE_URL': url}
    _, item_id = open_sale(tmp_path, users=1, stock=5, **env)
    env['SPRIG_APP_SECRET_KEY'] = SECRET
    tasks.configure(make_settings(tmp_path, **env))
    with database.connection_context():
        buyer = User.select().first()
        assert seckill.claim(seckill.sale(item_id, tasks.settings), buyer, tasks.settings) == 'claimed'
    redis_server.stop(signal.SIGKILL)
    with pytest.raises(QUEUE_ERRORS):
        tasks.create_order(buyer.id, item_id)
    with pytest.raises(CacheError):
        seckill.release(item_id, buyer.id)  # what the press does when its enqueue fails
    start_redis(spawn, tmp_path / 'redis', port)
    assert stock_counter(item_id) == 4  # the claim survived in the append-only file
    consumer = spawn(huey_consumer('-w', '2', '-k', 'thread'), process_env(tmp_path, **env), 'consumer')
    wait_until(lambda: cache.get(seckill.marker_key(item_id, buyer.id)) is None, 30, 'the claim never went back',
               consumer.stderr)
    assert stock_counter(item_id) == 5
