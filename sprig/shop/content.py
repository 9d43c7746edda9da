"""Writes to the shop's content: what each model's write makes stale in the cache, declared once
(STALE), and the save that commits a row and then drops that."""
from collections.abc import Callable

from peewee import Model

from models import Banner, Course, CourseCategory, CourseChapter, CourseSection, SeckillItem, Teacher
from sprig.cache.invalidation import Stale, writing
from sprig.shop import keys

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


def save(row: Model, values: dict) -> None:
    """Set values on row and save it: committed, then what it made stale is dropped (twice).

    :raise peewee.IntegrityError: a unique column already holds one of the values.
    """
    for name, value in values.items():
        setattr(row, name, value)
    with writing(stale(row)):
        row.save()


def soft_delete(row: Model) -> None:
    """Hide row for good: it stays (with what hangs from it), hidden from every list."""
    save(row, {'is_delete': True})
