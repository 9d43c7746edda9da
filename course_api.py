"""The course routes of API.md (categories, the list, the detail; cached, with ETags), and the
admin writes to the five catalogue tables, each of which drops the cached catalogue."""
import datetime
import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from bottle import Bottle, request
from peewee import IntegrityError, Model
from playhouse.shortcuts import model_to_dict
from pydantic import AfterValidator, Field, StringConstraints, create_model, model_validator

import courses
import seckill
import tasks
from api import (
    ApiError,
    Change,
    Doc,
    Input,
    Line,
    Link,
    OptionalImage,
    Orders,
    cached_ok,
    ok,
    parse_body,
    parse_query,
    validated,
)
from auth import Auth
from models import ContentModel, Course, CourseCategory, CourseChapter, CourseSection, Teacher
from settings import Settings

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]
Count = Annotated[int, Field(ge=0, le=1_000_000_000)]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]
CENTS = Decimal('0.01')


class CategoryIn(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    orders: Orders = 0
    is_show: bool = True


class TeacherIn(Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    role: Literal[Teacher.ROLES] = 'lecturer'
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = ''
    signature: Line = ''
    image: OptionalImage = ''
    brief: Text = ''
    orders: Orders = 0
    is_show: bool = True


class CourseIn(Input):
    name: Name
    kind: Literal[Course.KINDS]
    course_img: OptionalImage = ''
    course_type: Literal[Course.TYPES] = 'paid'
    brief: Text = ''
    level: Literal[Course.LEVELS] = 'beginner'
    pub_date: datetime.date = Field(default_factory=datetime.date.today)
    period: Annotated[int, Field(ge=1, le=3650)] = 30
    attachment_path: Line = ''
    status: Literal[Course.STATUSES] = 'online'
    students: Count = 0
    sections: Count = 0
    pub_sections: Count = 0
    price: Annotated[Decimal, Field(ge=0, le=10_000_000, max_digits=10, decimal_places=2),
                     AfterValidator(lambda price: price.quantize(CENTS))] = Decimal(0)
    teacher: Id | None = None
    category: Id | None = None
    orders: Orders = 0
    is_show: bool = True

    @model_validator(mode='after')
    def published_within_planned(self) -> 'CourseIn':
        if self.pub_sections > self.sections:
            raise ValueError('pub_sections cannot exceed sections')
        return self


class ChapterIn(Input):
    course: Id
    chapter: Annotated[int, Field(ge=1, le=1000)]
    name: Name
    summary: Text = ''
    pub_date: datetime.date = Field(default_factory=datetime.date.today)
    orders: Orders = 0
    is_show: bool = True


class SectionIn(Input):
    chapter: Id
    name: Name
    section_type: Literal[CourseSection.TYPES] = 'video'
    section_link: Link = ''
    duration: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r'^(\d{1,3}:[0-5]\d)?$')] = ''
    pub_date: datetime.date = Field(default_factory=datetime.date.today)
    free_trail: bool = False
    orders: Orders = 0
    is_show: bool = True


class AdminPage(Input):
    page: Annotated[int, Field(ge=1, le=100_000)] = 1


@dataclass(frozen=True)
class Table:
    model: type[ContentModel]
    schema: type[Input]
    references: dict[str, type[Model]]  # field -> the table its id must name

    @functools.cached_property
    def change(self) -> type[Input]:
        """What a PATCH body may hold: the schema's fields, each optional."""
        return partial_model(self.schema)


TABLES = {
    'categories': Table(CourseCategory, CategoryIn, {}),
    'teachers': Table(Teacher, TeacherIn, {}),
    'courses': Table(Course, CourseIn, {'teacher': Teacher, 'category': CourseCategory}),
    'chapters': Table(CourseChapter, ChapterIn, {'course': Course}),
    'sections': Table(CourseSection, SectionIn, {'chapter': CourseChapter}),
}


def partial_model(schema: type[Input]) -> type[Input]:
    """The schema with every field optional, and at least one given. A PATCH body is checked with
    it, then validated whole with the schema, merged with the row (so null is refused there)."""
    fields = {name: (field.annotation | None, None) for name, field in schema.model_fields.items()}
    return create_model(f'{schema.__name__}Change', __base__=Change, **fields)


def live_row(table: Table, row_id: int) -> ContentModel:
    row = table.model.get_or_none((table.model.id == row_id) & ~table.model.is_delete)
    if row is None:
        raise ApiError(404, f'no such row: {row_id}')
    return row


def check_references(table: Table, values: dict) -> None:
    """:raise ApiError 400: naming each field whose id names no live row."""
    errors = {field: f'no such {target.__name__.lower()}: {values[field]}'
              for field, target in table.references.items()
              if values.get(field) is not None
              and not target.select().where((target.id == values[field]) & ~target.is_delete).exists()}
    if errors:
        raise ApiError(400, f'invalid input: {", ".join(errors)}', errors=errors)


def save(row: ContentModel, values: dict) -> None:
    """Write through tasks.writing(): committed, then the cached catalogue is dropped (twice),
    and with a course, the cached descriptions of its flash sales (they show its name)."""
    for name, value in values.items():
        setattr(row, name, value)
    sales = [seckill.sale_key(item.id) for item in row.sales] if isinstance(row, Course) and row.id else []
    try:
        with tasks.writing(keys=(seckill.SALES_KEY, *sales) if sales else (), namespaces=(courses.NAMESPACE,)):
            row.save()
    except IntegrityError:
        raise ApiError(409, 'conflicts with an existing row', errors={'name': 'already taken'}) from None


def install_course_api(app: Bottle, settings: Settings, auth: Auth) -> None:
    """Mount the course routes and /api/v1/admin/<table> for the five catalogue tables."""
    limit = settings.app.max_body_kb * 1024

    @app.get('/api/v1/courses/categories', doc=Doc('Course categories (cached; ETag)', statuses=(304,)))
    def categories():
        return cached_ok(courses.categories(settings))

    @app.get('/api/v1/courses', doc=Doc('One page of online courses (cached; ETag)', query=courses.CourseQuery,
                                        statuses=(304,)))
    def course_list():
        return cached_ok(courses.course_page(parse_query(courses.CourseQuery), settings))

    @app.get('/api/v1/courses/<course_id:int>', doc=Doc('A course with its teacher, chapters and sections (cached; '
                                                        'ETag)', statuses=(304, 404)))
    def course_detail(course_id: int):
        entry = courses.course_detail(course_id, settings)
        if entry.value is None:
            raise ApiError(404, f'no course {course_id}')
        return cached_ok(entry)

    def list_rows(name: str) -> dict:
        auth.require_admin()
        model = TABLES[name].model
        page = validated(AdminPage, {'page': request.query.getunicode('page', '1')}).page
        rows = model.select().where(~model.is_delete).order_by(model.id).paginate(page, 100)
        return ok(result=[model_to_dict(row, recurse=False) for row in rows])

    def create_row(name: str) -> dict:
        auth.require_admin()
        table = TABLES[name]
        values = parse_body(table.schema, limit).model_dump()
        check_references(table, values)
        row = table.model()
        save(row, values)
        return ok('created', status=201, result=model_to_dict(row, recurse=False))

    def change_row(name: str, row_id: int) -> dict:
        """The fields given change; the row is validated whole, as a creation would be."""
        auth.require_admin()
        table = TABLES[name]
        row = live_row(table, row_id)
        body = parse_body(table.change, limit).model_dump(exclude_unset=True)
        stored = {field: row.__data__.get(field) for field in table.schema.model_fields}
        values = validated(table.schema, stored | body).model_dump()
        check_references(table, values)
        save(row, values)
        return ok(result=model_to_dict(row, recurse=False))

    def delete_row(name: str, row_id: int) -> dict:
        """A soft delete: hidden everywhere, the row (and what hangs from it) stays."""
        auth.require_admin()
        save(live_row(TABLES[name], row_id), {'is_delete': True})
        return ok('deleted')

    for name, table in TABLES.items():
        noun, rows, row = table.model.__name__, f'/api/v1/admin/{name}', f'/api/v1/admin/{name}/<row_id:int>'
        app.get(rows, callback=functools.partial(list_rows, name),
                doc=Doc(f'{noun} rows not deleted, hidden ones too, 100 a page', auth='admin', query=AdminPage))
        app.post(rows, callback=functools.partial(create_row, name),
                 doc=Doc(f'Add a {noun}', auth='admin', body=table.schema, statuses=(201, 409)))
        app.patch(row, callback=functools.partial(change_row, name),
                  doc=Doc(f'Change a {noun}: only the fields given', auth='admin', body=table.change,
                          statuses=(404, 409)))
        app.delete(row, callback=functools.partial(delete_row, name),
                   doc=Doc(f'Hide a {noun} for good (soft delete)', auth='admin', statuses=(404,)))
