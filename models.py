"""Tables: the database handle, bound once from [database] url, the base model and table creation."""
from peewee import DatabaseProxy, Model
from playhouse.db_url import connect

from settings import Settings, scheme, sqlite_file

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    'journal_mode': 'wal',
    'busy_timeout': 10_000,
    'foreign_keys': 1,
    'synchronous': 'normal',
}


class BaseModel(Model):
    class Meta:
        database = database


# Every table, in creation order (a table after those it refers to).
MODELS: list[type[Model]] = []


def init_db(settings: Settings) -> None:
    """Bind `database` to [database] url; SQLite gets WAL, a busy timeout and foreign keys."""
    url = settings.database.url
    if scheme(url) == 'sqlite':
        sqlite_file(url)
        # IMMEDIATE: a transaction that reads then writes would otherwise fail with
        # "database is locked" under concurrency instead of waiting for the lock.
        db = connect(url, pragmas=SQLITE_PRAGMAS, lock_type='IMMEDIATE')
    else:
        db = connect(url)
    if database.obj is not None and not database.is_closed():
        database.close()
    database.initialize(db)


def create_tables() -> None:
    """Create every missing table and index; safe to run again."""
    with database.connection_context():
        database.create_tables(MODELS, safe=True)


def is_empty() -> bool:
    """True when no demo or user data exists yet (a fresh install)."""
    with database.connection_context():
        return not any(model.select().exists() for model in MODELS)


def seed_demo() -> None:
    """Insert the demo data; each table's rows come with the issue that adds the table."""
    create_tables()
