"""The schema: missing tables created, then the migrations a database has not had, in order.

Safe again and again and from several processes at once. MIGRATIONS is append only; a
database's version is how many of them it has had.
"""
from collections.abc import Callable

from peewee import Model, SqliteDatabase
from playhouse.migrate import SchemaMigrator, migrate

from models import MODELS, SchemaVersion, User, database
from sprig.db.connection import use_wal


def create_tables() -> int:
    """Bring the database to the current schema: missing tables and indexes are created, then
    the migrations this database has not had run in order. Returns how many ran (a fresh
    database needs none)."""
    with database.connection_context():
        if isinstance(database.obj, SqliteDatabase):
            use_wal(database.connection())
        fresh = not database.table_exists(User._meta.table_name)
        database.create_tables(MODELS, safe=True)
        return upgrade(fresh)


# Schema upgrades for tables that already exist (new tables need none: create_tables makes them).
# Each does nothing when its change is there already: a process that judged a new database old
# while another was creating it (and so stamped it version 0) then runs them harmlessly.

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
