"""A consistent copy of the SQLite database while the app goes on using it."""
import sqlite3
from contextlib import closing
from pathlib import Path

from peewee import SqliteDatabase

from models import database


def backup(target: Path) -> int:
    """Copy the SQLite database to target with SQLite's online backup API (a consistent snapshot;
    in WAL mode writers are not held up). The copy gets its name only once it is complete and
    checked. Returns its size in bytes."""
    if not isinstance(database.obj, SqliteDatabase):
        raise ValueError('backup copies SQLite databases; use pg_dump or mysqldump for a server database')
    partial = target.with_name(target.name + '.part')
    try:
        with database.connection_context(), closing(sqlite3.connect(partial)) as copy:
            database.connection().backup(copy)
            verdict = copy.execute('PRAGMA quick_check').fetchone()[0]
        if verdict != 'ok':
            raise ValueError(f'the copy failed its check: {verdict}')
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size
