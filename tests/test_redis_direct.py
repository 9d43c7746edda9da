"""Commands over a connection per thread (redis_direct.py), against the real Redis."""
import secrets
import threading

import pytest
import redis

from sprig.redis_direct import Direct


@pytest.fixture
def direct(redis_url):
    pool = redis.ConnectionPool.from_url(redis_url, socket_timeout=5)
    yield Direct(pool)
    pool.disconnect()


@pytest.fixture
def admin(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def kill_connection(direct: Direct, admin: redis.Redis) -> None:
    """Redis closes this thread's connection, as a restarted Redis would have."""
    admin.client_kill_filter(_id=direct.command('CLIENT', 'ID'))


def test_replies_as_redis_gives_them(direct, redis_prefix):
    key = f'{redis_prefix}list'
    assert direct.command('LPUSH', key, b'a', b'b') == 2
    assert direct.command('HMGET', f'{redis_prefix}none', 'x', 'y') == [None, None]
    assert direct.command('BRPOP', key, 1) == [key.encode(), b'a']
    with pytest.raises(redis.ResponseError):
        direct.command('HGET', key, 'x')  # WRONGTYPE: the connection stays usable
    assert direct.command('LLEN', key) == 1


def test_each_thread_has_its_own_connection(direct):
    ids: list[int] = []
    together = threading.Barrier(4)  # all alive at once: a thread that ended gives its connection back

    def ask() -> None:
        ids.append(direct.command('CLIENT', 'ID'))
        together.wait(10)
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 4
    assert direct.command('CLIENT', 'ID') == direct.command('CLIENT', 'ID')  # and keeps it


def test_a_connection_redis_closed_is_opened_again_and_the_command_sent_again(direct, admin, redis_prefix):
    key = f'{redis_prefix}k'
    direct.command('SET', key, 'v')
    kill_connection(direct, admin)
    assert direct.command('GET', key) == b'v'


def test_a_command_that_must_not_be_sent_twice_reports_the_broken_connection(direct, admin, redis_prefix):
    key = f'{redis_prefix}queue'
    kill_connection(direct, admin)
    with pytest.raises(redis.ConnectionError):
        direct.command('BRPOP', key, 1, retry=False)  # its reply might have carried a task
    assert direct.command('LPUSH', key, b'x') == 1  # the next command connects again


def test_a_script_redis_does_not_know_yet_is_sent_whole(direct, redis_prefix):
    # A text no Redis has seen, so the first call meets NOSCRIPT (no SCRIPT FLUSH on a shared server).
    script = direct.script(f"-- {secrets.token_hex(8)}\nreturn redis.call('incrby', KEYS[1], ARGV[1])")
    key = f'{redis_prefix}n'
    assert script(keys=[key], args=[2]) == 2
    assert script(keys=[key], args=[3]) == 5  # by digest now


def test_a_finished_thread_gives_its_connection_back(direct):
    thread = threading.Thread(target=lambda: direct.command('PING'))
    thread.start()
    thread.join()
    import gc
    gc.collect()
    assert not direct.pool._in_use_connections  # none kept for the thread that ended
    assert direct.command('PING') is not None  # this thread takes one again
