"""Cache backends, measured: operations per second for get, set, add and incr, one thread and four.

    .venv/bin/python bench/cache.py [--ops N]

Prints one JSON line. Redis (127.0.0.1:6379, database 11) is measured when reachable; the keys
it writes carry a random prefix and are deleted afterwards.
"""
import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sprig.cache.backends import open_backend  # noqa: E402
from sprig.cache.store import Cache, CacheError  # noqa: E402

REDIS_URL = 'redis://127.0.0.1:6379/11'


def rate(ops: int, run) -> float:
    started = time.perf_counter()
    run()
    return round(ops / (time.perf_counter() - started))


def threaded(cache: Cache, ops: int, threads: int = 4) -> float:
    def work():
        for _ in range(ops // threads):
            cache.incr('bench:shared')
    pool = [threading.Thread(target=work) for _ in range(threads)]

    def run():
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return rate(ops, run)


def measure(url: str, ops: int) -> dict:
    cache = Cache()
    cache.initialize(open_backend(url), f'bench{secrets.token_hex(3)}:')
    value = {'id': 1, 'title': 'banner', 'image': 'http://x/y.png', 'orders': 1}
    figures = {
        'set': rate(ops, lambda: [cache.set(f'k{i}', value, ttl=60) for i in range(ops)]),
        'get': rate(ops, lambda: [cache.get(f'k{i}') for i in range(ops)]),
        'add': rate(ops, lambda: [cache.add(f'a{i}', 1, ttl=60) for i in range(ops)]),
        'incr': rate(ops, lambda: [cache.incr('bench:counter') for _ in range(ops)]),
        'incr_4_threads': threaded(cache, ops),
    }
    cache.delete(*[f'k{i}' for i in range(ops)], *[f'a{i}' for i in range(ops)],
                 'bench:counter', 'bench:shared')
    cache.backend.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ops', type=int, default=5000)
    ops = parser.parse_args().ops
    results = {'ops': ops}
    with tempfile.TemporaryDirectory() as tmp:
        results['sqlite'] = measure(f'sqlite:///{tmp}/cache.db', ops)
    results['memory'] = measure('memory://', ops)
    try:
        results['redis'] = measure(REDIS_URL, ops)
    except CacheError as exc:
        results['redis'] = {'skipped': str(exc)}
    print(json.dumps(results))


if __name__ == '__main__':
    main()
