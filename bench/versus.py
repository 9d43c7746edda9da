"""Sprig beside its Django + DRF + Celery peer (../shared/peer), each measured by its own benchmarks.

The banner read, the flash sale and the task engine, each pair run in turn, and the ratios.

    .venv/bin/python bench/versus.py [--rounds R] [--only banner|seckill|tasks] [--quick]

Prints one JSON line. A round takes about 3 minutes on a 2-core machine (--rounds 3, the
default, about 9-10), plus the peer's install the first time; --quick (short wrk runs, small
sales, 1,000 tasks) makes it a smoke run of about a minute. --only (repeatable) runs only the
named pairs. Without the peer it prints {"bench": "versus", "skipped": ...}.

- The peer (../shared/peer, else /work/shared/peer) is copied to a temporary directory, as its
  README asks: shared/ is read-only. Its virtualenv is built once from its requirements.txt in
  <tempdir>/sprig-peer-venv and reused while those requirements are unchanged (a copy of them
  in the venv says which it holds); when the install fails the run is skipped, as above.
- Each round runs, per pair, the peer's script and Sprig's beside it, in the same minute; the
  order flips every round so that neither side always runs on a machine the other just warmed:
  bench_banner.sh and bench/banner.py (which also measures the floor, floor_app.py); then
  bench_seckill.py and bench/seckill.py --clients 32 (the peer's 32 client threads, so both
  modes are measured like for like); then bench_tasks.py and bench/tasks.py --repeat 1.
  The peer's scripts start their own redis-server on ports 6390-6392 and app servers on 8601
  and 8602 (a port in use fails that run); Sprig's use Redis on 127.0.0.1:6379 (databases 13
  and 14). The peer's scripts get a clean environment and a TMPDIR of their own (their logs and
  pidfiles), deleted with the copy.
- Every script's last stdout line is its JSON; `runs` keeps the figures taken from each.
  `peer` and `sprig` are the medians over the rounds (a flag such as `ok` is true when it was
  true in every round). A ratio is Sprig's figure over the other's in the same round, the
  median over the rounds: above 1 is Sprig faster for a rate, slower for a latency or a time.
- What the two sides measure differs in places (see `not_measured` for the ratios left null):
  Sprig's uncached read is its admin banner list (the table read every time, behind a token),
  and banner.py has no warm-up run; the peer's seckill gives every
  request its own buyer, Sprig's has 500 buyers pressing 4 times, whose presses after the sale
  is over are answered without a task; the peer's tasks figure compared is its `live` phase
  (a warm worker draining while the producer enqueues), which is how Sprig's are taken.
The machine is shared: compare ratios of one run, not figures across runs; `load` has the
1-minute load average before and after.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PEER_PLACES = (PROJECT.parent / 'shared' / 'peer', Path('/work/shared/peer'))
VENV = Path(tempfile.gettempdir()) / 'sprig-peer-venv'
INSTALL_TIMEOUT = 900  # seconds for the peer's pip install
RUN_TIMEOUT = 600  # seconds one benchmark script may take
PAIRS = ('banner', 'seckill', 'tasks')

# The figures taken from each script's JSON: name -> its path of keys, as the scripts print them.
FIGURES = {
    'banner': {
        'peer': {'cached_rps': ('cached', 'req_per_s'), 'cached_p99_ms': ('cached', 'p99_ms'),
                 'nocache_rps': ('nocache', 'req_per_s'), 'nocache_p99_ms': ('nocache', 'p99_ms'), 'ok': ('ok',)},
        'sprig': {'cached_rps': ('sprig', 'rps'), 'cached_p99_ms': ('sprig', 'p99_ms'),
                  'floor_rps': ('floor', 'rps'), 'floor_p99_ms': ('floor', 'p99_ms'),
                  'uncached_rps': ('sprig_uncached', 'rps'), 'uncached_p99_ms': ('sprig_uncached', 'p99_ms')},
    },
    'seckill': {
        'peer': {'submits_per_s': ('submit', 'req_per_s'), 'p50_ms': ('submit', 'p50_ms'),
                 'p99_ms': ('submit', 'p99_ms'), 'results_known_s': ('results', 'all_known_after_submit_start_s'),
                 'ok': ('ok',)},
        'sprig': {f'{mode}_{name}': (mode, key) for mode in ('embedded', 'redis') for name, key in (
            ('submits_per_s', 'submits_per_s'), ('p50_ms', 'submit_p50_ms'), ('p99_ms', 'submit_p99_ms'),
            ('results_known_s', 'results_known_s'))} | {'embedded_sound': ('met', 'embedded_sound'),
                                                         'redis_sound': ('met', 'redis_sound')},
    },
    'tasks': {
        'peer': {'live_end_to_end_per_s': ('live', 'tasks_per_s_end_to_end'),
                 'cold_end_to_end_per_s': ('cold', 'tasks_per_s_end_to_end'),
                 'cold_drain_per_s': ('cold', 'drain_tasks_per_s'), 'ok': ('ok',)},
        'sprig': {f'{queue}_records_{records}_end_to_end_per_s': (queue, f'records_{records}', 'end_to_end_per_s')
                  for queue in ('redis', 'sqlite') for records in ('on', 'off')}
        | {'bare_huey_end_to_end_per_s': ('redis', 'bare', 'end_to_end_per_s')},
    },
}

# ratio -> (pair, Sprig's figure, the other side, its figure)
RATIOS = {
    'banner_cached_rps_sprig_per_floor': ('banner', 'cached_rps', 'sprig', 'floor_rps'),
    'banner_cached_rps_sprig_per_peer': ('banner', 'cached_rps', 'peer', 'cached_rps'),
    'banner_cached_p99_sprig_per_peer': ('banner', 'cached_p99_ms', 'peer', 'cached_p99_ms'),
    'banner_uncached_rps_sprig_per_peer': ('banner', 'uncached_rps', 'peer', 'nocache_rps'),
    'seckill_embedded_per_peer': ('seckill', 'embedded_submits_per_s', 'peer', 'submits_per_s'),
    'seckill_redis_per_peer': ('seckill', 'redis_submits_per_s', 'peer', 'submits_per_s'),
    'seckill_embedded_p99_per_peer': ('seckill', 'embedded_p99_ms', 'peer', 'p99_ms'),
    'seckill_redis_p99_per_peer': ('seckill', 'redis_p99_ms', 'peer', 'p99_ms'),
    'seckill_embedded_results_known_per_peer': ('seckill', 'embedded_results_known_s', 'peer', 'results_known_s'),
    'seckill_redis_results_known_per_peer': ('seckill', 'redis_results_known_s', 'peer', 'results_known_s'),
    'tasks_records_on_per_off': ('tasks', 'redis_records_on_end_to_end_per_s', 'sprig',
                                 'redis_records_off_end_to_end_per_s'),
    'tasks_records_on_per_bare_huey': ('tasks', 'redis_records_on_end_to_end_per_s', 'sprig',
                                       'bare_huey_end_to_end_per_s'),
    'tasks_records_on_per_celery': ('tasks', 'redis_records_on_end_to_end_per_s', 'peer', 'live_end_to_end_per_s'),
    'tasks_records_off_per_celery': ('tasks', 'redis_records_off_end_to_end_per_s', 'peer',
                                     'live_end_to_end_per_s'),
}
NOT_MEASURED: dict[str, tuple[str, str]] = {}  # ratios asked for that no script gives a figure for: why


def commands(peer: Path, quick: bool) -> dict[str, dict[str, tuple[list[str], Path]]]:
    """pair -> side -> (argv, working directory)."""
    python = str(VENV / 'bin' / 'python')
    seconds = '3' if quick else '10'  # the peer's DURATION, for both
    return {
        'banner': {
            'peer': (['env', f'DURATION={seconds}', f'WARMUP={"1" if quick else "2"}', 'bash', 'bench/bench_banner.sh'],
                     peer),
            'sprig': ([sys.executable, 'bench/banner.py', '--rounds', '1', '--seconds', seconds], PROJECT),
        },
        'seckill': {
            'peer': ([python, 'bench/bench_seckill.py', *(['--requests', '400', '--stock', '50'] if quick else [])],
                     peer),
            'sprig': ([sys.executable, 'bench/seckill.py', '--clients', '32', *(['--quick'] if quick else [])],
                      PROJECT),
        },
        'tasks': {
            'peer': ([python, 'bench/bench_tasks.py', *(['--n', '1000'] if quick else [])], peer),
            'sprig': ([sys.executable, 'bench/tasks.py', *(['--quick'] if quick else ['--repeat', '1'])], PROJECT),
        },
    }


def find_peer() -> Path | None:
    return next((place for place in PEER_PLACES if (place / 'django_celery' / 'requirements.txt').exists()), None)


def copy_peer(peer: Path, work: Path) -> Path:
    """A writable copy of the peer (shared/ is read-only, and copytree keeps the modes)."""
    copy = work / 'peer'
    shutil.copytree(peer, copy, ignore=shutil.ignore_patterns('.venv', '__pycache__', '*.sqlite3'))
    for path in (copy, *copy.rglob('*')):
        path.chmod(path.stat().st_mode | 0o200)
    return copy / 'django_celery'


def peer_venv(requirements: Path) -> str | None:
    """Build the peer's virtualenv unless it holds these requirements already; None when it is
    ready, else why not."""
    wanted = requirements.read_text()
    marker = VENV / 'sprig-requirements.txt'
    if marker.exists() and marker.read_text() == wanted:
        return None
    print(f'versus: installing the peer into {VENV}', file=sys.stderr)
    steps = ([] if (VENV / 'bin' / 'python').exists() else [[sys.executable, '-m', 'venv', str(VENV)]]) + [
        [str(VENV / 'bin' / 'python'), '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
         '-r', str(requirements)]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f'{" ".join(step[:4])} took over {INSTALL_TIMEOUT} s'
        if done.returncode != 0:
            return f'{" ".join(step[:4])} exited {done.returncode}: {done.stderr.strip()[-300:]}'
    marker.write_text(wanted)  # only after a complete install
    return None


def peer_env(tmp: Path) -> dict[str, str]:
    """A clean environment: the peer's scripts read many knobs from it (REDIS_PORT, DB_PATH,
    DURATION...), so nothing of ours may leak in; its own TMPDIR for its logs and pidfiles."""
    env = {key: os.environ[key] for key in ('PATH', 'HOME', 'LANG', 'LC_ALL') if key in os.environ}
    return env | {'PEER_VENV': str(VENV), 'TMPDIR': str(tmp)}


def run(argv: list[str], cwd: Path, env: dict[str, str] | None) -> dict:
    """A script's last JSON line, or {'error': ...}. The peer's seckill exits 1 when a check
    fails, after printing its JSON: the JSON is kept and says which."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {'error': f'still running after {RUN_TIMEOUT} s'}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return {'error': f'exited {done.returncode} without JSON: {done.stderr.strip()[-300:]}'}
    if done.returncode != 0:
        result['exit_code'] = done.returncode
    result['wall_s'] = round(time.monotonic() - started, 1)
    return result


def pick(result: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def figures(pair: str, side: str, result: dict) -> dict:
    """The figures of FIGURES out of one run; a run that failed or skipped says so instead."""
    if 'error' in result or 'skipped' in result:
        return {'error': result.get('error') or result['skipped']}
    taken = {name: pick(result, path) for name, path in FIGURES[pair][side].items()}
    if 'exit_code' in result:
        taken['exit_code'] = result['exit_code']
    return taken | {'wall_s': result['wall_s']}


def median(values: list):
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, bool) for value in present):
        return all(present)
    return round(statistics.median(present), 3)


def ratio(top, bottom) -> float | None:
    return None if top is None or not bottom else top / bottom


def summarise(runs: dict) -> dict:
    """Medians per side and the ratios (each the median of its per-round ratios)."""
    sides: dict = {'peer': {}, 'sprig': {}}
    for pair, by_side in runs.items():
        for side, rounds in by_side.items():
            names = FIGURES[pair][side]
            sides[side][pair] = {name: median([found.get(name) for found in rounds]) for name in names}
    ratios = {}
    for name, (pair, mine, side, theirs) in RATIOS.items():
        if pair in runs:
            rounds = zip(runs[pair]['sprig'], runs[pair][side], strict=True)
            ratios[name] = median([ratio(ours.get(mine), other.get(theirs)) for ours, other in rounds])
    not_measured = {name: why for name, (pair, why) in NOT_MEASURED.items() if pair in runs}
    return {**sides, 'ratios': ratios | dict.fromkeys(not_measured), 'not_measured': not_measured}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3, help='rounds of every pair (default 3)')
    parser.add_argument('--only', action='append', choices=PAIRS, help='run only this pair (repeatable)')
    parser.add_argument('--quick', action='store_true', help='a smoke run: short and small')
    args = parser.parse_args()
    pairs = [pair for pair in PAIRS if pair in (args.only or PAIRS)]
    peer = find_peer()
    if peer is None:
        print(json.dumps({'bench': 'versus', 'skipped': f'no peer at {" or ".join(map(str, PEER_PLACES))}'}))
        return
    problem = peer_venv(peer / 'django_celery' / 'requirements.txt')
    if problem:
        print(json.dumps({'bench': 'versus', 'skipped': f'the peer could not be installed: {problem}'}))
        return

    started, load_before = time.monotonic(), load()
    runs: dict = {pair: {'peer': [], 'sprig': []} for pair in pairs}
    with tempfile.TemporaryDirectory(prefix='sprig-versus-', ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        (work / 'tmp').mkdir()
        argvs = commands(copy_peer(peer, work), args.quick)
        envs = {'peer': peer_env(work / 'tmp'), 'sprig': None}
        for round_ in range(max(1, args.rounds)):
            order = ('peer', 'sprig') if round_ % 2 == 0 else ('sprig', 'peer')
            for pair in pairs:
                for side in order:
                    argv, cwd = argvs[pair][side]
                    print(f'versus: round {round_ + 1} {pair} {side}', file=sys.stderr)
                    runs[pair][side].append(figures(pair, side, run(argv, cwd, envs[side])))
    print(json.dumps({'bench': 'versus', 'rounds': max(1, args.rounds), 'quick': args.quick, **summarise(runs),
                      'runs': runs, 'load': [load_before, load()], 'seconds': round(time.monotonic() - started)}))


if __name__ == '__main__':
    main()
