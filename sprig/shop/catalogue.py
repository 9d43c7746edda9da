"""The course catalogue as the API and the pages show it, read through the cache.

Every cached read is filed under the catalogue's namespace (keys.CATALOGUE), so any write to the five tables drops
all of them at once (the catalogue changes rarely; its readers are many). Values are plain JSON
(dates as ISO strings, prices as strings with two decimals), as the cache stores them.
"""
import functools
import hashlib
import operator
from typing import Annotated, Literal

from peewee import JOIN, Expression, ModelSelect
from pydantic import Field, StringConstraints

from models import Course, CourseCategory, CourseChapter, CourseSection, SeckillItem, Teacher, utcnow
from sprig.cache import aside
from sprig.settings import Settings, absolute_url
from sprig.shop import keys
from sprig.web.inputs import Input

ORDERINGS = ('orders', '-orders', 'price', '-price', 'students', '-students', 'id', '-id')


class CourseQuery(Input):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    kind: Literal[Course.KINDS] | None = None
    category: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    ordering: Literal[ORDERINGS] = 'orders'
    page: Annotated[int, Field(ge=1, le=100_000)] = 1
    size: Annotated[int, Field(ge=1, le=50)] = 10


def teacher_view(teacher: Teacher | None, base_url: str, full: bool = False) -> dict | None:
    if teacher is None or teacher.is_delete:
        return None
    view = {'id': teacher.id, 'name': teacher.name, 'title': teacher.title,
            'image': absolute_url(teacher.image, base_url)}
    if full:
        view |= {'role': teacher.role, 'signature': teacher.signature, 'brief': teacher.brief}
    return view


def course_view(course: Course, base_url: str) -> dict:
    category = course.category
    return {
        'id': course.id, 'name': course.name, 'kind': course.kind,
        'course_img': absolute_url(course.course_img, base_url), 'course_type': course.course_type,
        'brief': course.brief, 'level': course.level, 'pub_date': course.pub_date.isoformat(),
        'period': course.period, 'status': course.status, 'students': course.students,
        'sections': course.sections, 'pub_sections': course.pub_sections, 'price': f'{course.price:.2f}',
        'orders': course.orders,
        'category': None if category is None or category.is_delete else {'id': category.id, 'name': category.name},
        'teacher': teacher_view(course.teacher, base_url),
    }


def listed() -> ModelSelect:
    """Courses people may see, with their teacher and category in the same query."""
    return (Course.shown(Course, Teacher, CourseCategory)
            .join(Teacher, JOIN.LEFT_OUTER).switch(Course).join(CourseCategory, JOIN.LEFT_OUTER)
            .where(Course.status == 'online'))


def matching(words: str) -> Expression:
    """Courses whose name or description holds every word (up to 8), whatever its case: ILIKE on
    PostgreSQL, LIKE on SQLite (a % or _ in a word matches more, never less)."""
    each = [Course.name.contains(word) | Course.brief.contains(word) for word in words.split()[:8]]
    return functools.reduce(operator.and_, each)


def categories(settings: Settings) -> aside.Entry:
    def compute() -> list[dict]:
        rows = (CourseCategory.shown()
                .order_by(CourseCategory.orders, CourseCategory.id))
        return [{'id': row.id, 'name': row.name} for row in rows]
    return aside.read('categories', compute, settings.cache.ttl, namespace=keys.CATALOGUE)


def course_page(query: CourseQuery, settings: Settings) -> aside.Entry:
    """One page of the list, filtered by words, kind and category, in the ordering asked for."""
    def compute() -> dict:
        courses = listed()
        if query.q:
            courses = courses.where(matching(query.q))
        if query.kind:
            courses = courses.where(Course.kind == query.kind)
        if query.category:
            courses = courses.where(Course.category == query.category)
        field = getattr(Course, query.ordering.lstrip('-'))
        order = field.desc() if query.ordering.startswith('-') else field.asc()
        items = courses.order_by(order, Course.id).paginate(query.page, query.size)
        return {'count': courses.count(), 'page': query.page, 'size': query.size,
                'items': [course_view(course, settings.app.public_url) for course in items]}
    words = hashlib.sha256(query.q.lower().encode()).hexdigest()[:16] if query.q else None
    key = f'list:{words}:{query.kind}:{query.category}:{query.ordering}:{query.page}:{query.size}'
    return aside.read(key, compute, settings.cache.ttl, namespace=keys.CATALOGUE)


def course_detail(course_id: int, settings: Settings) -> aside.Entry:
    """The course with its teacher, its chapters with their sections in order, and its current or
    next flash sale; None for a course nobody may see (cached too, so that probing ids costs no
    queries either)."""
    def compute() -> dict | None:
        course = listed().where(Course.id == course_id).first()
        if course is None:
            return None
        detail = course_view(course, settings.app.public_url)
        detail['teacher'] = teacher_view(course.teacher, settings.app.public_url, full=True)
        detail['chapters'] = chapters_of(course)
        sale = (SeckillItem.select().where((SeckillItem.course == course) & (SeckillItem.ends_at > utcnow()))
                .order_by(SeckillItem.starts_at).first())
        detail['seckill'] = None if sale is None else {'id': sale.id, 'price': f'{sale.price:.2f}'}
        return detail
    return aside.read(f'course:{course_id}', compute, settings.cache.ttl, namespace=keys.CATALOGUE)


def chapters_of(course: Course) -> list[dict]:
    """Two queries whatever the number of chapters: the chapters, then all their sections."""
    chapters = list(CourseChapter.shown().where(CourseChapter.course == course)
                    .order_by(CourseChapter.chapter, CourseChapter.orders, CourseChapter.id))
    sections: dict[int, list[dict]] = {chapter.id: [] for chapter in chapters}
    if chapters:
        rows = (CourseSection.shown().where(CourseSection.chapter.in_(list(sections)))
                .order_by(CourseSection.orders, CourseSection.id))
        for row in rows:
            sections[row.chapter_id].append({
                'name': row.name, 'orders': row.orders, 'section_type': row.section_type,
                'duration': row.duration, 'free_trail': row.free_trail})
    return [{'chapter': chapter.chapter, 'name': chapter.name, 'summary': chapter.summary,
             'pub_date': chapter.pub_date.isoformat(), 'sections': sections[chapter.id]} for chapter in chapters]
