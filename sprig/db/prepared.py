"""SQL built once per kind of database, and its first row read straight into a model instance:
for the queries of every request and every press, where Peewee's building took longer than the query."""
import functools
from collections.abc import Callable

from peewee import Model, Query

from models import database


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
