"""The schema: missing tables created, then the migrations a database has not had, in order.

Safe again and again and from several processes at once. MIGRATIONS is append only; a
database's version is how many of them it has had.
"""
from collections.abc import Callable

from peewee import SQL, Model, SqliteDatabase
from playhouse.migrate import SchemaMigrator, migrate

from models import MODELS, Order, SchemaVersion, TaskRecord, User, database
from sprig.db.connection import use_wal


def create_tables() -> int:
    """Bring the database to the current schema: missing tables are created, then the
    migrations this database has not had run in order. Returns how many ran (a fresh
    database needs none)."""
    with database.connection_context():
        if isinstance(database.obj, SqliteDatabase):
            use_wal(database.connection())
        existing = set(database.get_tables())
        fresh = User._meta.table_name not in existing
        # Only the missing tables, with their indexes: an index of a column an existing table has
        # yet to get from a migration would be made on SQLite all the same, on the column's name
        # read as a string (SQLite's double-quoted literals), and a unique one would then refuse
        # rows it should take.
        database.create_tables([model for model in MODELS if model._meta.table_name not in existing], safe=True)
        return upgrade(fresh)


# Schema upgrades for tables that already exist (new tables need none: create_tables makes them).
# Each does nothing when its change is there already: a process that judged a new database old
# while another was creating it (and so stamped it version 0) then runs them harmlessly.

def add_column(migrator: SchemaMigrator, model: type[Model], name: str) -> list:
    """The field `name`'s column (course_id for a foreign key course), unless it is there. A
    NOT NULL column comes with its DEFAULT in one ALTER: Peewee would add it nullable and then make
    it NOT NULL, which SQLite does by rebuilding the table, and dropping the old user table
    cascaded to every order and token of its users (found by the migration test)."""
    table, field = model._meta.table_name, model._meta.fields[name]
    if field.column_name in {column.name for column in database.get_columns(table)}:
        return []
    if field.null or field.default is None:
        return [migrator.add_column(table, field.column_name, field)]
    column = field.clone()
    column.constraints = [SQL(f"DEFAULT '{field.default}'")]  # the defaults here are plain text
    return [migrator.add_column(table, field.column_name, column, allow_not_null=True)]


def add_last_login(migrator: SchemaMigrator) -> list:
    return add_column(migrator, User, 'last_login')


def orders_of_courses(migrator: SchemaMigrator) -> list:
    """An order is for a sale's seat or for a course: its item may be empty, a course column
    comes, and one live order per user and course."""
    table, changes = Order._meta.table_name, []
    if not next(column for column in database.get_columns(table) if column.name == 'item_id').null:
        changes.append(migrator.drop_not_null(table, 'item_id'))  # first: SQLite rebuilds the table for it
    changes += add_column(migrator, Order, 'course')
    present = {index.name for index in database.get_indexes(table)}
    if 'order_user_id_course_id_live' not in present:
        changes.append(migrator.add_index(table, ('user_id', 'course_id', 'live'), unique=True))
    return changes


def roles(migrator: SchemaMigrator) -> list:
    """is_admin becomes a role (user, editor or admin); the admins keep theirs."""
    table = User._meta.table_name
    if 'is_admin' not in {column.name for column in database.get_columns(table)}:
        return []
    migrate(*add_column(migrator, User, 'role'))
    User.update(role='admin').where(SQL(f'is_admin = {database.param}', (True,))).execute()
    return [migrator.drop_column(table, 'is_admin')]


def task_events(migrator: SchemaMigrator) -> list:
    """Task records keep their transitions, a failure's traceback and the enqueuing request."""
    return [*add_column(migrator, TaskRecord, 'events'), *add_column(migrator, TaskRecord, 'traceback'),
            *add_column(migrator, TaskRecord, 'request_id')]


MIGRATIONS: list[Callable[[SchemaMigrator], list]] = [add_last_login, orders_of_courses, roles, task_events]


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
