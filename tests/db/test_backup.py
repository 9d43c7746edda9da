"""`python app.py backup PATH`: a consistent copy of the SQLite database while the site writes to
it, and a site restored from the copy."""
import json
import sqlite3
import subprocess
import threading
import time
import urllib.request

from conftest import SECRET, process_env, python, start_site

from sprig.settings import PROJECT_DIR


def app_py(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(python('app.py', *args), env=env, cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=60)


def test_a_backup_taken_while_the_site_writes_is_whole_and_restores(tmp_path, spawn):
    live = tmp_path / 'live'
    start_site(spawn, live)  # `python app.py`: serving, with its demo data
    stop, written = threading.Event(), []

    def keep_writing():  # another writer, committing as fast as it can during the backup
        with sqlite3.connect(live / 'sprig.db', timeout=10) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO banner (title, image, link, info, orders, is_show, is_delete, created, "
                             "updated) VALUES ('w', 'static/w.svg', '', '', 99, 0, 0, datetime(), datetime())")
                conn.commit()
                written.append(1)
    writer = threading.Thread(target=keep_writing)
    writer.start()
    time.sleep(0.3)
    try:
        done = app_py('backup', str(tmp_path / 'copy.db'), env=process_env(live))
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('backed up sqlite:///') and str(tmp_path / 'copy.db') in done.stdout
    with sqlite3.connect(tmp_path / 'copy.db') as copy:
        assert copy.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
        hidden = copy.execute("SELECT count(*) FROM banner WHERE title = 'w'").fetchone()[0]
        assert copy.execute('SELECT count(*) FROM course').fetchone()[0] == 12
    assert 0 < hidden <= len(written)
    assert not (tmp_path / 'copy.db.part').exists()

    refused = app_py('backup', str(tmp_path / 'copy.db'), env=process_env(live))
    assert refused.returncode == 1 and 'pass --force' in refused.stderr

    # Restore: a site whose database is the copy.
    restored = start_site(spawn, tmp_path / 'restored', SPRIG_DATABASE_URL=f'sqlite:///{tmp_path}/copy.db')
    with urllib.request.urlopen(restored + '/api/v1/courses/categories', timeout=10) as reply:
        assert [c['name'] for c in json.loads(reply.read())['result']][0] == 'Python'


def test_a_server_database_is_not_copied_by_backup(tmp_path, postgres_url):
    env = process_env(tmp_path, SPRIG_DATABASE_URL=postgres_url, SPRIG_APP_SECRET_KEY=SECRET)
    done = app_py('backup', str(tmp_path / 'copy.db'), env=env)
    assert done.returncode == 1 and 'use pg_dump or mysqldump' in done.stderr
    assert not (tmp_path / 'copy.db').exists()
