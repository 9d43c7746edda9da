"""Writes to the shop's content: what each model's write makes stale in the cache, declared once
(STALE), and the save that commits a row and then drops that."""
from collections.abc import Callable

from peewee import Model

from models import Banner, Course, CourseCategory, CourseChapter, CourseSection, SeckillItem, Teacher, User
from sprig.cache.invalidation import Stale, writing
from sprig.shop import audit, keys

CATALOGUE = Stale(namespaces=(keys.CATALOGUE,))


def course_stale(course: Course) -> Stale:
    """The catalogue, and the descriptions of the course's flash sales (they show its name)."""
    sales = [keys.sale(item.id) for item in course.sales] if course.id else []
    return Stale(keys=(keys.SALES, *sales) if sales else (), namespaces=(keys.CATALOGUE,))


def sale_stale(item: SeckillItem) -> Stale:
    """The sale's description, the list, and the course pages that link to it."""
    own = (keys.sale(item.id),) if item.id else ()
    return Stale(keys=(keys.SALES, *own), namespaces=(keys.CATALOGUE,))


STALE: dict[type[Model], Callable[[Model], Stale]] = {
    Banner: lambda banner: Stale(keys=(keys.BANNERS,)),
    CourseCategory: lambda row: CATALOGUE,
    Teacher: lambda row: CATALOGUE,
    Course: course_stale,
    CourseChapter: lambda row: CATALOGUE,
    CourseSection: lambda row: CATALOGUE,
    SeckillItem: sale_stale,
}


def stale(row: Model) -> Stale:
    """What a write to row makes stale in the cache."""
    return STALE[type(row)](row)


def save(row: Model, values: dict, actor: User | None = None, action: str = '') -> None:
    """Set values on row and save it: committed with its audit entry (when staff made it), then
    what it made stale is dropped (twice). action defaults to create or change.

    :raise peewee.IntegrityError: a unique column already holds one of the values.
    """
    action = action or ('change' if row.get_id() else 'create')
    changes = audit.diff(row, values)
    for name, value in values.items():
        setattr(row, name, value)
    with writing(stale(row)):
        row.save()
        audit.record(actor, action, row, changes)


def soft_delete(row: Model, actor: User | None = None) -> None:
    """Hide row for good: it stays (with what hangs from it), hidden from every list."""
    save(row, {'is_delete': True}, actor, 'delete')


def restore(row: Model, actor: User | None = None) -> None:
    """Undo a soft delete."""
    save(row, {'is_delete': False}, actor, 'restore')


BULK = {'show': ({'is_show': True}, 'show'), 'hide': ({'is_show': False}, 'hide'),
        'delete': ({'is_delete': True}, 'delete'), 'restore': ({'is_delete': False}, 'restore')}


def bulk(rows: list[Model], action: str, actor: User | None = None) -> int:
    """One of BULK's actions on each row that it changes; how many it changed."""
    values, name = BULK[action]
    changed = [row for row in rows if audit.diff(row, values)]
    for row in changed:
        save(row, values, actor, name)
    return len(changed)
