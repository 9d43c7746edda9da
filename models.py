"""Tables: the database handle, bound once from [database] url, the base model, tables and demo data."""
import datetime

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    Model,
)
from playhouse.db_url import connect

from settings import Settings, scheme, sqlite_file

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    'journal_mode': 'wal',
    'busy_timeout': 10_000,
    'foreign_keys': 1,
    'synchronous': 'normal',
}


def utcnow() -> datetime.datetime:
    """Stored times are naive UTC: every backend compares them the same way."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class User(BaseModel):
    username = CharField(max_length=20, unique=True)
    # Unique but optional: NULLs never collide, so admins created on the command line need none.
    mobile = CharField(max_length=11, unique=True, null=True)
    email = CharField(max_length=254, unique=True, null=True)
    password_hash = CharField(max_length=200)
    is_admin = BooleanField(default=False)
    is_active = BooleanField(default=True)
    created = DateTimeField(default=utcnow)

    def public(self) -> dict:
        return {'id': self.id, 'username': self.username, 'mobile': self.mobile, 'email': self.email,
                'is_admin': self.is_admin, 'created': self.created}


class Token(BaseModel):
    """A login: only a keyed hash of the token is stored, so a copy of the table logs nobody in."""

    digest = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref='tokens', on_delete='CASCADE')
    created = DateTimeField(default=utcnow)
    expires = DateTimeField(index=True)


# Every table, in creation order (a table after those it refers to).
MODELS: list[type[Model]] = [User, Token]


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
