"""The database binding: SQLite with its pragmas, PostgreSQL and MySQL by URL."""
import pytest
from conftest import SECRET, make_settings

import models
from models import database


@pytest.fixture(params=['sqlite', 'postgres', 'mysql'])
def database_url(request, tmp_path):
    if request.param == 'sqlite':
        return ''
    return request.getfixturevalue(f'{request.param}_url')


def test_binds_from_url_and_creates_tables_idempotently(tmp_path, database_url):
    models.init_db(make_settings(tmp_path, SPRIG_DATABASE_URL=database_url, SPRIG_APP_SECRET_KEY=SECRET))
    with database.connection_context():
        assert database.execute_sql('SELECT 1').fetchone()[0] == 1
    models.create_tables()
    models.create_tables()
    assert models.is_empty()


def test_sqlite_runs_wal_with_foreign_keys_and_a_busy_timeout(tmp_path):
    models.init_db(make_settings(tmp_path))
    with database.connection_context():
        pragma = lambda name: database.execute_sql(f'PRAGMA {name}').fetchone()[0]  # noqa: E731
        assert (pragma('journal_mode'), pragma('foreign_keys'), pragma('busy_timeout')) == ('wal', 1, 10000)
    assert (tmp_path / 'sprig.db').exists()
