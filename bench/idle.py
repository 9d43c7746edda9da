"""An idle `python app.py`, measured: the share of a core it uses and how often its threads wake.

    .venv/bin/python bench/idle.py [--seconds S] [--settle S]

Starts `python app.py --port P` (embedded SQLite everything, the consumer in it and a web process
per core beside it) on a fresh data directory, waits until it answers and its first interval runs
are done (--settle), then reads /proc over --seconds: cpu_percent is utime+stime of every thread of
every one of its processes over the wall time, and wakeups_per_s the voluntary and involuntary
context switches of all their threads per second.
Prints one JSON line.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from servers import free_port, wait_ready

PROJECT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: every thread's


def family(pid: int) -> list[int]:
    """pid and its children: `python app.py` runs a web process per core beside itself."""
    kids = [int(stat.parent.name) for stat in Path('/proc').glob('[0-9]*/stat')
            if stat.read_text().rsplit(')', 1)[1].split()[1] == str(pid)]
    return [pid, *kids]


def switches(pid: int) -> int:
    total = 0
    for task in Path(f'/proc/{pid}/task').iterdir():
        for line in (task / 'status').read_text().splitlines():
            if line.startswith(('voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches')):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=30)
    parser.add_argument('--settle', type=float, default=10)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix='sprig-idle-') as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith('SPRIG_')} | {'SPRIG_DATA_DIR': data}
        proc = subprocess.Popen([sys.executable, 'app.py', '--port', str(port)], cwd=PROJECT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f'http://127.0.0.1:{port}/api/v1/health', proc)
            time.sleep(args.settle)
            pids = family(proc.pid)
            cpu = sum(map(cpu_seconds, pids))
            woke, started = sum(map(switches, pids)), time.monotonic()
            time.sleep(args.seconds)
            cpu, woke = sum(map(cpu_seconds, pids)) - cpu, sum(map(switches, pids)) - woke
            elapsed = time.monotonic() - started
            threads = sum(len(list(Path(f'/proc/{pid}/task').iterdir())) for pid in pids)
        finally:
            proc.terminate()
            proc.wait(15)
    print(json.dumps({'bench': 'idle', 'seconds': round(elapsed, 1), 'cpu_percent': round(100 * cpu / elapsed, 2),
                      'wakeups_per_s': round(woke / elapsed, 1), 'processes': len(pids), 'threads': threads}))


if __name__ == '__main__':
    main()
