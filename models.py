"""Tables: the database handle, bound once from [database] url (pooled), the base model, the tables,
their creation and migrations, and the SQLite backup."""
import datetime
import functools
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from peewee import (
    BooleanField,
    CharField,
    Check,
    DatabaseProxy,
    DateField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    Query,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect
from playhouse.migrate import SchemaMigrator, migrate

from settings import Settings, scheme, sqlite_file

database = DatabaseProxy()

# Set on every new connection. WAL is a property of the file, set once by create_tables():
# asking for it on each connection can fail with "database is locked" under write load.
SQLITE_PRAGMAS = {
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
    last_login = DateTimeField(null=True)  # since schema version 1

    @classmethod
    def has_mobile(cls, mobile: str) -> bool:
        return cls.select().where(cls.mobile == mobile).exists()

    def public(self) -> dict:
        return {'id': self.id, 'username': self.username, 'mobile': self.mobile, 'email': self.email,
                'is_admin': self.is_admin, 'created': self.created, 'last_login': self.last_login}


class Token(BaseModel):
    """A login: only a keyed hash of the token is stored, so a copy of the table logs nobody in."""

    digest = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref='tokens', on_delete='CASCADE')
    created = DateTimeField(default=utcnow)
    expires = DateTimeField(index=True)


class ContentModel(BaseModel):
    """The columns every shop table shares, as the notes' BaseModel has them: an order to sort
    by, shown or hidden, soft-deleted, and when it was created and last saved."""

    orders = IntegerField(default=0)
    is_show = BooleanField(default=True)
    is_delete = BooleanField(default=False)
    created = DateTimeField(default=utcnow)
    updated = DateTimeField(default=utcnow)

    def save(self, *args, **kwargs):
        self.updated = utcnow()
        return super().save(*args, **kwargs)


class Banner(ContentModel):
    """A slide of the home page carousel."""

    title = CharField(max_length=64)
    image = CharField(max_length=255)  # a path on this site (static/...) or an absolute URL
    link = CharField(max_length=255, default='')  # a path on this site or an absolute URL
    info = CharField(max_length=255, default='')

    class Meta:
        indexes = ((('is_delete', 'is_show', 'orders'), False),)  # the home page's query


class CourseCategory(ContentModel):
    name = CharField(max_length=64, unique=True)


class Teacher(ContentModel):
    ROLES = ('lecturer', 'mentor', 'class adviser')

    name = CharField(max_length=32)
    role = CharField(max_length=16, choices=[(role, role) for role in ROLES], default='lecturer')
    title = CharField(max_length=64, default='')  # e.g. "Senior Python engineer"
    signature = CharField(max_length=255, default='')  # a line in the teacher's own words
    image = CharField(max_length=255, default='')  # a path on this site or an absolute URL
    brief = TextField(default='')


class Course(ContentModel):
    KINDS = ('free', 'actual', 'light')
    TYPES = ('paid', 'vip', 'degree')
    LEVELS = ('beginner', 'intermediate', 'advanced')
    STATUSES = ('online', 'offline', 'coming')

    name = CharField(max_length=128)
    kind = CharField(max_length=8, choices=[(kind, kind) for kind in KINDS])
    course_img = CharField(max_length=255, default='')
    course_type = CharField(max_length=8, choices=[(kind, kind) for kind in TYPES], default='paid')
    brief = TextField(default='')
    level = CharField(max_length=16, choices=[(level, level) for level in LEVELS], default='beginner')
    pub_date = DateField(default=datetime.date.today)
    period = IntegerField(default=7)  # days a student is advised to take
    attachment_path = CharField(max_length=255, default='')
    status = CharField(max_length=8, choices=[(status, status) for status in STATUSES], default='online')
    students = IntegerField(default=0)
    sections = IntegerField(default=0)  # planned in all
    pub_sections = IntegerField(default=0)  # published so far
    price = DecimalField(max_digits=10, decimal_places=2, default=0)
    # Deleting a teacher or a category leaves its courses without one.
    teacher = ForeignKeyField(Teacher, null=True, backref='courses', on_delete='SET NULL')
    category = ForeignKeyField(CourseCategory, null=True, backref='courses', on_delete='SET NULL')

    class Meta:
        indexes = ((('kind', 'status', 'is_show', 'is_delete', 'orders'), False),)  # the list pages


class CourseChapter(ContentModel):
    course = ForeignKeyField(Course, backref='chapters', on_delete='CASCADE')
    chapter = IntegerField()  # its number in the course
    name = CharField(max_length=128)
    summary = TextField(default='')
    pub_date = DateField(default=datetime.date.today)


class CourseSection(ContentModel):
    TYPES = ('document', 'exercise', 'video')

    chapter = ForeignKeyField(CourseChapter, backref='sections', on_delete='CASCADE')
    name = CharField(max_length=128)
    section_type = CharField(max_length=8, choices=[(kind, kind) for kind in TYPES], default='video')
    section_link = CharField(max_length=255, default='')  # the video or document address
    duration = CharField(max_length=16, default='')  # "12:30" for videos
    pub_date = DateField(default=datetime.date.today)
    free_trail = BooleanField(default=False)  # the notes' name: watchable before buying


class SeckillItem(BaseModel):
    """A flash sale of a course: `stock_left` units at `price` between two instants (UTC)."""

    course = ForeignKeyField(Course, backref='sales', on_delete='CASCADE')
    price = DecimalField(max_digits=10, decimal_places=2)
    stock_total = IntegerField()
    stock_left = IntegerField(constraints=[Check('stock_left >= 0')])  # never oversold, whatever the code
    starts_at = DateTimeField()
    ends_at = DateTimeField()
    created = DateTimeField(default=utcnow)


class Order(BaseModel):
    """A unit won in a flash sale. `live` is 1 until the order is cancelled, then NULL: the unique
    index on (user, item, live) lets the database refuse a second live order for the same user
    and item, on every backend (NULLs never collide)."""

    STATUSES = ('pending_payment', 'paid', 'cancelled')

    user = ForeignKeyField(User, backref='orders', on_delete='CASCADE')
    item = ForeignKeyField(SeckillItem, backref='orders', on_delete='CASCADE')
    task_id = CharField(max_length=64, unique=True)  # the submission that won it: a re-run finds it
    status = CharField(max_length=16, choices=[(status, status) for status in STATUSES], default='pending_payment')
    live = BooleanField(null=True, default=True)
    price = DecimalField(max_digits=10, decimal_places=2)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    paid_at = DateTimeField(null=True)
    cancelled_at = DateTimeField(null=True)

    class Meta:
        indexes = ((('user', 'item', 'live'), True),)

    def public(self) -> dict:
        return {'id': self.id, 'item_id': self.item_id, 'status': self.status, 'price': f'{self.price:.2f}',
                'created_at': self.created_at, 'expires_at': self.expires_at, 'paid_at': self.paid_at,
                'cancelled_at': self.cancelled_at}


class SchemaVersion(BaseModel):
    """One row (id 1): how many of MIGRATIONS this database has had."""

    version = IntegerField()


class TaskRecord(BaseModel):
    """One task's life, from enqueue to its end (see engine.py): what the API and dashboard read."""

    id = CharField(max_length=64, primary_key=True)  # Huey's task id: a random UUID
    name = CharField(max_length=100, index=True)
    args = TextField(default='')  # a summary for people, secrets masked
    payload = TextField(null=True)  # the real arguments as JSON, to run it again
    state = CharField(max_length=10, index=True)
    user_id = IntegerField(null=True, index=True)  # who caused it, when a user did
    consumer = CharField(max_length=100, null=True)
    created_at = DateTimeField(index=True)
    eta = DateTimeField(null=True)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    retries = IntegerField(default=0)
    error = TextField(null=True)
    result = TextField(null=True)
    requeued = BooleanField(default=False)  # re-enqueued once after its consumer died

    def public(self) -> dict:
        return {field: getattr(self, field) for field in (
            'id', 'name', 'args', 'state', 'created_at', 'eta', 'started_at', 'finished_at',
            'retries', 'error', 'result', 'user_id')}


class ConsumerBeat(BaseModel):
    """A consumer's heartbeat: alive while beat_at is recent."""

    id = CharField(max_length=100, primary_key=True)
    host = CharField(max_length=255)
    pid = IntegerField()
    workers = IntegerField()
    started_at = DateTimeField()
    beat_at = DateTimeField(index=True)


class Lease(BaseModel):
    """A named lease (the scheduler's leadership): held by `holder` until `expires`."""

    name = CharField(max_length=50, primary_key=True)
    holder = CharField(max_length=100, null=True)
    expires = DateTimeField()


class Schedule(BaseModel):
    """An interval task's clock, shared so that a new leader goes on where the last one stopped."""

    name = CharField(max_length=100, primary_key=True)
    every = IntegerField()
    last_run = DateTimeField(null=True)
    next_run = DateTimeField()


# Every table, in creation order (a table after those it refers to).
MODELS: list[type[Model]] = [User, Token, Banner, CourseCategory, Teacher, Course, CourseChapter, CourseSection,
                             SeckillItem, Order, TaskRecord, ConsumerBeat, Lease, Schedule, SchemaVersion]
# The tables people fill: a database with rows in none of them is a fresh install.
CONTENT: list[type[Model]] = [User, Banner, CourseCategory, Teacher, Course]


# Connections are pooled: a request or a task takes one and gives it back (database.close()),
# instead of paying for a new connection and its pragmas each time (a fifth of a seckill
# press's CPU before). Each thread holds at most one, so the pool is never larger than the
# number of threads; connections idle for STALE seconds are closed.
POOL = {'max_connections': None, 'stale_timeout': 300}


def pooled(url: str) -> str:
    kind, rest = url.split(':', 1)
    return url if kind.endswith('+pool') else f'{kind}+pool:{rest}'


def init_db(settings: Settings) -> None:
    """Bind `database` to [database] url; SQLite gets WAL, a busy timeout and foreign keys."""
    url = settings.database.url
    if scheme(url) == 'sqlite':
        sqlite_file(url)
        # IMMEDIATE: a transaction that reads then writes would otherwise fail with
        # "database is locked" under concurrency instead of waiting for the lock.
        # check_same_thread: a pooled connection goes back to whichever thread asks next.
        db = connect(pooled(url), pragmas=SQLITE_PRAGMAS, lock_type='IMMEDIATE', check_same_thread=False, **POOL)
    else:
        db = connect(pooled(url), **POOL)
    if database.obj is not None:
        database.close()
        database.obj.close_idle()  # not close_all(): that closes connections other threads are using
    database.initialize(db)


def create_tables() -> int:
    """Bring the database to the current schema, safely again and again and from several
    processes at once: missing tables and indexes are created, then the migrations this
    database has not had run in order. Returns how many ran (a fresh database needs none)."""
    with database.connection_context():
        if isinstance(database.obj, SqliteDatabase):
            use_wal(database.connection())
        fresh = not database.table_exists(User._meta.table_name)
        database.create_tables(MODELS, safe=True)
        return upgrade(fresh)


# Schema upgrades for tables that already exist (new tables need none: create_tables makes them).
# Append only; a database's version is how many of these it has had. Each does nothing when its
# change is there already: a process that judged a new database old while another was creating
# it (and so stamped it version 0) then runs them harmlessly.

def add_column(migrator: SchemaMigrator, model: type[Model], name: str) -> list:
    table = model._meta.table_name
    present = {column.name for column in database.get_columns(table)}
    return [] if name in present else [migrator.add_column(table, name, model._meta.fields[name])]


def add_last_login(migrator: SchemaMigrator) -> list:
    return add_column(migrator, User, 'last_login')


MIGRATIONS: list[Callable[[SchemaMigrator], list]] = [add_last_login]


def upgrade(fresh: bool) -> int:
    """Run the missing migrations. Each claims its step by moving the version on in the same
    transaction as its change, so two processes starting together run it once."""
    SchemaVersion.insert(id=1, version=len(MIGRATIONS) if fresh else 0).on_conflict_ignore().execute()
    migrator, ran = SchemaMigrator.from_database(database.obj), 0
    while (version := SchemaVersion.get_by_id(1).version) < len(MIGRATIONS):
        with database.atomic():
            step = SchemaVersion.update(version=version + 1).where((SchemaVersion.id == 1)
                                                                   & (SchemaVersion.version == version))
            if step.execute():
                migrate(*MIGRATIONS[version](migrator))
                ran += 1
    return ran


def use_wal(conn: sqlite3.Connection, timeout: float = 10) -> None:
    """Switch a SQLite file to WAL once (the database's, the SQLite cache's). The switch needs the
    file to itself and SQLite does not wait for that (no busy handler): two processes starting on
    a fresh file failed 13 times in 30 with "database is locked". So it is retried, like Huey's own
    switch."""
    deadline = time.monotonic() + timeout
    while conn.execute('PRAGMA journal_mode').fetchone()[0] != 'wal':
        try:
            conn.execute('PRAGMA journal_mode = wal')
        except sqlite3.OperationalError as exc:
            if 'locked' not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def prepared(build: Callable[[], Query]) -> Callable[[], str]:
    """The SQL of the query build() makes, made once per kind of database bound: for the queries
    of every request, since Peewee takes longer to build a small query (0.25 ms measured) than
    SQLite to run it. Run it with the values in the order build() uses them."""
    made: dict[str, str] = {}

    def sql() -> str:
        kind = type(database.obj).__name__
        if kind not in made:
            made[kind] = build().sql()[0]
        return made[kind]
    return sql


def first(model: type[Model], sql: str, *params) -> Model | None:
    """The first row of prepared SQL as a model instance, or None. Built here from the cursor:
    Model.raw() works the columns out again on every query, which took longer than the query."""
    cursor = database.execute_sql(sql, params)
    try:
        row = cursor.fetchone()
        names = tuple(column[0] for column in cursor.description)
    finally:
        cursor.close()
    if row is None:
        return None
    values = {name: convert(value) for (name, convert), value in zip(converters(model, names), row, strict=True)}
    instance = model(__no_default__=1, **values)
    instance._dirty.clear()  # as loaded, nothing changed
    return instance


@functools.cache
def converters(model: type[Model], columns: tuple[str, ...]) -> tuple[tuple[str, Callable], ...]:
    """Each column's field name and its conversion from the database's value."""
    fields = model._meta.combined
    return tuple((fields[column].name, fields[column].python_value) for column in columns)


def backup(target: Path) -> int:
    """Copy the SQLite database to target while the app goes on using it, with SQLite's online
    backup API (a consistent snapshot; in WAL mode writers are not held up). The copy gets its
    name only once it is complete and checked. Returns its size in bytes."""
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


def is_empty() -> bool:
    """True when no demo or user data exists yet (a fresh install); task bookkeeping does not count."""
    with database.connection_context():
        return not any(model.select().exists() for model in CONTENT)
