"""The cached banner read beside the floor of the stack, in one run: GET /api/v1/home/banners on
`python app.py` (the default, embedded mode) against a bare Bottle route returning a constant
banner body under the same Waitress (../shared/peer/floor_app.py, `waitress-serve --threads=8`).

    .venv/bin/python bench/banner.py [--rounds R] [--seconds S] [--connections C]

Needs wrk (apt-get install wrk). Each round runs `wrk -t2 -cC -dSs --latency` on the floor, then
on Sprig's cached read, then on Sprig's uncached one (the admin banner list, which reads the table
every time, with an admin's token), interleaved; it prints one JSON line with each side's medians
(req/s, p99 ms; `sprig_uncached` for the uncached read) and the ratios of the cached read to
the floor. The floor app is copied to a temporary directory (shared/ is read-only). Sprig runs
on a fresh data directory with its demo data.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from servers import free_port, wait_ready

PROJECT = Path(__file__).resolve().parent.parent
FLOOR = PROJECT.parent / 'shared' / 'peer' / 'floor_app.py'
BIN = Path(sys.executable).parent


def wrk(url: str, seconds: int, connections: int, header: str = '') -> dict:
    out = subprocess.run(['wrk', '-t2', f'-c{connections}', f'-d{seconds}s', '--latency', url,
                          *(['-H', header] if header else [])], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    p99 = re.search(r'99%\s+([\d.]+)(us|ms|s)', out)
    scale = {'us': 0.001, 'ms': 1, 's': 1000}[p99.group(2)]
    return {'rps': rate, 'p99_ms': float(p99.group(1)) * scale}


def admin_token(port: int, env: dict, data: Path) -> str:
    """A bearer token of an admin made for the run."""
    subprocess.run([sys.executable, 'app.py', 'create-admin', 'bench_admin', '--password-stdin'], cwd=PROJECT,
                   env=env | {'SPRIG_DATA_DIR': str(data)}, input='bench password 1\n', text=True, check=True,
                   capture_output=True)
    body = json.dumps({'username': 'bench_admin', 'password': 'bench password 1'}).encode()
    request = urllib.request.Request(f'http://127.0.0.1:{port}/api/v1/user/login', data=body,
                                     headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())['token']


def start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=int, default=8)
    parser.add_argument('--connections', type=int, default=32)
    args = parser.parse_args()
    if shutil.which('wrk') is None or not FLOOR.exists():
        print(json.dumps({'bench': 'banner', 'skipped': 'needs wrk and ../shared/peer/floor_app.py'}))
        return
    with tempfile.TemporaryDirectory(prefix='sprig-banner-') as tmp:
        shutil.copy(FLOOR, tmp)
        base = {k: v for k, v in os.environ.items() if not k.startswith('SPRIG_')}
        floor_port, sprig_port = free_port(), free_port()
        floor = start([str(BIN / 'waitress-serve'), '--threads=8', f'--port={floor_port}', 'floor_app:app'],
                      Path(tmp), base)
        sprig = start([sys.executable, 'app.py', '--port', str(sprig_port)], PROJECT,
                      base | {'SPRIG_DATA_DIR': str(Path(tmp) / 'data')})
        try:
            urls = {'floor': f'http://127.0.0.1:{floor_port}/floor',
                    'sprig': f'http://127.0.0.1:{sprig_port}/api/v1/home/banners'}
            wait_ready(urls['floor'], floor)
            wait_ready(urls['sprig'], sprig)
            # The uncached read: the banner table read on every request (the admin list, behind
            # a token), as the peer's /banner_nocache/ reads it.
            urls['sprig_uncached'] = f'http://127.0.0.1:{sprig_port}/api/v1/admin/banners'
            headers = {'sprig_uncached': f'Authorization: Bearer {admin_token(sprig_port, base, Path(tmp) / "data")}'}
            runs: dict[str, list[dict]] = {'floor': [], 'sprig': [], 'sprig_uncached': []}
            for _ in range(args.rounds):
                for side in runs:
                    runs[side].append(wrk(urls[side], args.seconds, args.connections, headers.get(side, '')))
        finally:
            for proc in (floor, sprig):
                proc.terminate()
                proc.wait(15)
    medians = {side: {key: round(statistics.median(run[key] for run in found), 2) for key in ('rps', 'p99_ms')}
               for side, found in runs.items()}
    print(json.dumps({'bench': 'banner', 'rounds': args.rounds, 'seconds': args.seconds,
                      'connections': args.connections, **medians,
                      'rps_ratio': round(medians['sprig']['rps'] / medians['floor']['rps'], 3),
                      'p99_ratio': round(medians['sprig']['p99_ms'] / medians['floor']['p99_ms'], 3),
                      'runs': runs}))


if __name__ == '__main__':
    main()
