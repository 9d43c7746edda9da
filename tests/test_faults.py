"""Faults with real processes: the SQLite database held locked by another writer for 2 s while
`python app.py` serves. Writes wait for the lock (busy timeout 10 s) and then succeed, reads are
not held up (WAL), nothing answers 500 and nothing is half-written."""
import json
import sqlite3
import subprocess
import threading
import time
import urllib.request

from conftest import process_env, python, start_site

from settings import PROJECT_DIR

HOLD = 2.0  # seconds the other writer keeps the lock


def call(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict, float]:
    headers = {'Content-Type': 'application/json', **({'Authorization': f'Bearer {token}'} if token else {})}
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read()), time.monotonic() - started
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), time.monotonic() - started


def test_writes_wait_out_a_database_held_locked_and_reads_go_on(spawn, tmp_path):
    site = start_site(spawn, tmp_path)
    admin = subprocess.run(python('app.py', 'create-admin', 'admin_1', '--password-stdin'), input='admin password 1\n',
                           env=process_env(tmp_path), cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30)
    assert admin.returncode == 0, admin.stderr
    token = call(site + '/api/v1/user/login', {'username': 'admin_1', 'password': 'admin password 1'})[1]['token']
    locked = threading.Event()

    def hold_lock():
        with sqlite3.connect(tmp_path / 'sprig.db', timeout=10, isolation_level=None) as conn:
            conn.execute('BEGIN IMMEDIATE')  # the write lock: every other writer waits
            conn.execute("UPDATE banner SET info = 'held' WHERE id = 1")
            locked.set()
            time.sleep(HOLD)
            conn.execute('COMMIT')
    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(5)
    answers: list[tuple[int, dict, float]] = []
    writers = [threading.Thread(target=lambda n=n: answers.append(call(
        site + '/api/v1/admin/banners', {'title': f'Written during the lock {n}', 'image': 'static/x.svg'}, token)))
        for n in range(3)]
    for writer in writers:
        writer.start()
    read = call(site + '/api/v1/courses?kind=free')  # meanwhile, a read
    for writer in writers:
        writer.join()
    holder.join()

    assert read[0] == 200 and read[2] < HOLD  # WAL: readers never wait for the writer
    assert [status for status, _, _ in answers] == [201, 201, 201], answers
    assert max(elapsed for _, _, elapsed in answers) >= HOLD * 0.5  # they waited for the lock
    with sqlite3.connect(tmp_path / 'sprig.db') as conn:
        assert conn.execute("SELECT info FROM banner WHERE id = 1").fetchone()[0] == 'held'
        written = "SELECT count(*) FROM banner WHERE title LIKE 'Written during the lock %'"
        assert conn.execute(written).fetchone()[0] == 3
        assert conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    titles = [banner['title'] for banner in call(site + '/api/v1/home/banners')[1]['result']]
    assert sum(title.startswith('Written during the lock') for title in titles) == 3  # orders 0: first
