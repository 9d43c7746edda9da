"""Upgrades: a database made by the oldest schema Sprig shipped (tests/data/schema_v0.sql) is
brought to the current one by `python app.py migrate`, keeping its rows; `serve` does the same."""
import sqlite3
import subprocess

from conftest import make_settings, process_env, python, start_site

from models import SchemaVersion, User, database
from sprig.db import schema
from sprig.db.connection import init_db
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR

OLDEST = PROJECT_DIR / 'tests' / 'data' / 'schema_v0.sql'


def oldest_database(path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(OLDEST.read_text())
        conn.execute("INSERT INTO user (username, mobile, email, password_hash, is_admin, is_active, created) "
                     "VALUES ('old_timer', '13800138000', NULL, 'x', 0, 1, '2026-01-01 00:00:00')")
        conn.execute("INSERT INTO user (username, mobile, email, password_hash, is_admin, is_active, created) "
                     "VALUES ('old_admin', NULL, NULL, 'x', 1, 1, '2026-01-01 00:00:00')")


def columns(path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def test_migrate_upgrades_the_oldest_schema_and_keeps_its_rows(tmp_path):
    oldest_database(tmp_path / 'sprig.db')
    assert 'last_login' not in columns(tmp_path / 'sprig.db', 'user')

    def migrate() -> str:
        done = subprocess.run(python('app.py', 'migrate'), env=process_env(tmp_path), cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert f'schema version {len(schema.MIGRATIONS)}, {len(schema.MIGRATIONS)} migrations run now' in migrate()
    assert 'last_login' in columns(tmp_path / 'sprig.db', 'user')
    assert '0 migrations run now' in migrate()  # again: nothing to do
    init_db(make_settings(tmp_path))
    with database.connection_context():
        assert SchemaVersion.get_by_id(1).version == len(schema.MIGRATIONS)
        assert User.get(User.username == 'old_timer').mobile == '13800138000'
        assert [user.role for user in User.select().order_by(User.id)] == ['user', 'admin']  # is_admin became a role
        assert {'banner', 'course', 'seckillitem', 'order'} <= set(database.get_tables())
    assert 'is_admin' not in columns(tmp_path / 'sprig.db', 'user')


def test_a_fresh_database_starts_at_the_current_version(tmp_path):
    init_db(make_settings(tmp_path))
    assert create_tables() == 0
    with database.connection_context():
        assert SchemaVersion.get_by_id(1).version == len(schema.MIGRATIONS)


def test_serve_upgrades_before_it_serves(tmp_path, spawn):
    oldest_database(tmp_path / 'sprig.db')
    site = start_site(spawn, tmp_path)  # `python app.py`
    assert 'last_login' in columns(tmp_path / 'sprig.db', 'user')
    assert site.startswith('http://127.0.0.1:')


def test_a_database_misjudged_as_old_still_upgrades(tmp_path):
    """Two processes starting on a new database: one may see the other's tables and stamp
    version 0; the migrations then find their changes made and do nothing."""
    init_db(make_settings(tmp_path))
    create_tables()
    with database.connection_context():
        SchemaVersion.update(version=0).execute()
    assert create_tables() == len(schema.MIGRATIONS)
    with database.connection_context():
        assert SchemaVersion.get_by_id(1).version == len(schema.MIGRATIONS)


def test_orders_of_version_1_become_orders_of_sales_or_courses(tmp_path):
    with sqlite3.connect(tmp_path / 'sprig.db') as conn:
        conn.executescript((PROJECT_DIR / 'tests' / 'data' / 'schema_v1.sql').read_text())
        conn.executescript("""
            INSERT INTO user (id, username, password_hash, is_admin, is_active, created)
                VALUES (1, 'buyer_001', 'x', 0, 1, '2026-01-01');
            INSERT INTO course (id, orders, is_show, is_delete, created, updated, name, kind, course_img, course_type,
                brief, level, pub_date, period, attachment_path, status, students, sections, pub_sections, price)
                VALUES (1, 0, 1, 0, '2026-01-01', '2026-01-01', 'C', 'actual', '', 'paid', '', 'beginner',
                '2026-01-01', 7, '', 'online', 0, 0, 0, 10);
            INSERT INTO seckillitem (id, course_id, price, stock_total, stock_left, starts_at, ends_at, created)
                VALUES (1, 1, 1, 1, 0, '2026-01-01', '2027-01-01', '2026-01-01');
            INSERT INTO "order" (id, user_id, item_id, task_id, status, live, price, created_at, expires_at)
                VALUES (1, 1, 1, 't1', 'paid', 1, 1, '2026-01-01', '2026-01-02');""")
    init_db(make_settings(tmp_path))
    assert create_tables() == 3  # orders_of_courses, roles, task_events
    with sqlite3.connect(tmp_path / 'sprig.db') as conn:
        info = {row[1]: row for row in conn.execute('PRAGMA table_info("order")')}
        assert info['item_id'][3] == 0 and 'course_id' in info  # item may be empty now
        assert conn.execute('SELECT task_id, status FROM "order"').fetchall() == [('t1', 'paid')]
