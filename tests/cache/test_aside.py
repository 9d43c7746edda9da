"""The cache-aside toolkit on its own: namespaces, jitter, single flight, a failing compute."""
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import make_settings, process_env

from sprig.cache import aside as cached
from sprig.cache.store import cache, init_cache
from sprig.settings import PROJECT_DIR

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)


@pytest.fixture
def cache_file(tmp_path):
    init_cache(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))
    return tmp_path / 'cache.db'


def test_dropping_a_namespace_drops_every_key_filed_under_it(cache_file):
    calls = []

    def page(n):
        return lambda: calls.append(n) or [n]
    for n in (1, 2):
        assert cached.read(f'page:{n}', page(n), 60, namespace='courses').status == 'miss'
    assert cached.read('other', page(0), 60).status == 'miss'
    assert cached.read('page:1', page(1), 60, namespace='courses').status == 'hit'
    cached.drop(namespaces=['courses'])
    assert [cached.read(f'page:{n}', page(n), 60, namespace='courses').status for n in (1, 2)] == ['miss', 'miss']
    assert cached.read('other', page(0), 60).status == 'hit'
    assert calls == [1, 2, 0, 1, 2]
    cached.drop(keys=['other'])
    assert cached.read('other', page(0), 60).status == 'miss'


def test_ttls_carry_up_to_ten_percent_of_jitter(cache_file):
    before = time.time()
    for n in range(40):
        cached.put(f'k{n}', n, ttl=100)
    with sqlite3.connect(cache_file) as conn:
        lives = [expires - before for (expires,) in conn.execute("SELECT expires FROM cache WHERE key LIKE '%data:k%'")]
    assert len(lives) == 40 and all(99 < life < 111 for life in lives)
    assert max(lives) - min(lives) > 1  # spread, not one instant


def test_a_reader_waits_for_the_filler_instead_of_computing(cache_file):
    calls, entries = [], []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return 'value'
    readers = [threading.Thread(target=lambda: entries.append(cached.read('slow', slow, 60))) for _ in range(5)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len(calls) == 1 and {entry.value for entry in entries} == {'value'}
    assert sorted(entry.status for entry in entries) == ['hit'] * 4 + ['miss']


def test_a_failing_compute_frees_the_fill_for_the_next_reader(cache_file):
    def broken():
        raise RuntimeError('database said no')
    with pytest.raises(RuntimeError):
        cached.read('k', broken, 60)
    assert cached.read('k', lambda: 'fine', 60).status == 'miss'  # at once: no lock left behind


def test_a_near_value_is_kept_a_moment_in_the_process_and_a_drop_here_takes_it_at_once(cache_file, monkeypatch):
    from sprig.cache.store import cache
    values = iter(['first', 'second', 'third'])
    assert cached.read_near('sale', lambda: next(values), 60).value == 'first'
    cache.backend.delete(cache.prefix + 'data:sale')  # another process's write, say: not seen yet
    assert cached.read_near('sale', lambda: next(values), 60).value == 'first'
    monkeypatch.setattr(cached, 'NEAR_TTL', 0.2)
    cached.drop(keys=['sale'])  # this process's own write
    assert cached.read_near('sale', lambda: next(values), 60).value == 'second'
    assert cached.read_near('nothing', lambda: None, 60).value is None
    assert 'nothing' not in cache.near.values  # "no such key" is kept only in the shared cache


def test_a_read_begun_before_a_drop_does_not_put_the_old_value_back(cache_file):
    from sprig.cache.store import cache
    started = time.monotonic()
    cached.drop(keys=['sale'])  # the write lands while the read is under way
    cache.near.put('sale', 'old', since=started, until=started + 60)
    assert cache.near.get('sale', time.monotonic()) is None


def test_a_copy_kept_in_this_process_goes_when_another_process_drops_the_key(cache_file, tmp_path):
    """Reads are served from this process's copy while the machine's generation holds; a drop in
    another process (a consumer, another web process) moves it, and the next read here is fresh."""
    values = iter(['first', 'second'])
    assert cached.read('shared', lambda: next(values), 60).status == 'miss'
    cache.set('data:shared', {'value': 'behind its back', 'etag': 'x'})  # not through aside: no drop
    assert cached.read('shared', lambda: 'unused', 60).value == 'first'  # the copy, no round trip
    code = 'import tasks; from sprig.cache import aside; aside.drop(keys=["shared"])'
    subprocess.run([sys.executable, '-c', code], env=process_env(tmp_path), cwd=PROJECT_DIR, check=True, timeout=60)
    again = cached.read('shared', lambda: next(values), 60)
    assert (again.status, again.value) == ('miss', 'second')
    assert cached.read('shared', lambda: 'unused', 60).status == 'hit'
