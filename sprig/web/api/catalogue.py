"""The course routes of API.md (categories, the list, the detail; cached, with ETags), and the
admin writes to the five catalogue tables, each of which drops the cached catalogue."""
import datetime
import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from peewee import IntegrityError, Model
from playhouse.shortcuts import model_to_dict
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, create_model, model_validator
from pydantic.fields import FieldInfo

from models import ContentModel, Course, CourseCategory, CourseChapter, CourseSection, Teacher, User
from sprig.settings import Settings
from sprig.shop import catalogue, content
from sprig.web.envelope import ApiError, cached_ok, ok
from sprig.web.inputs import Change, Input, Line, Link, OptionalImage, Orders, validated
from sprig.web.routing import Routes, get_or_404, or_404

ROUTES = Routes()
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
    """Other parameters are ignored, as they always were here."""

    model_config = ConfigDict(extra='ignore')
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


def constrained(field: FieldInfo) -> object:
    """The field's type with its constraints (a field keeps them apart from its annotation)."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def partial_model(schema: type[Input]) -> type[Input]:
    """The schema with every field optional, and at least one given. A PATCH body is checked with
    it, then validated whole with the schema, merged with the row (so null is refused there)."""
    fields = {name: (constrained(field) | None, None) for name, field in schema.model_fields.items()}
    return create_model(f'{schema.__name__}Change', __base__=Change, **fields)


def live_row(table: Table, row_id: int) -> ContentModel:
    return get_or_404(table.model.live(), table.model.id == row_id, missing=f'no such row: {row_id}')


def check_references(table: Table, values: dict) -> None:
    """:raise ApiError 400: naming each field whose id names no live row."""
    errors = {field: f'no such {target.__name__.lower()}: {values[field]}'
              for field, target in table.references.items()
              if values.get(field) is not None and not target.live().where(target.id == values[field]).exists()}
    if errors:
        raise ApiError(400, f'invalid input: {", ".join(errors)}', errors=errors)


@ROUTES.get('/api/v1/courses/categories', 'Course categories (cached; ETag)', statuses=(304,))
def categories(settings: Settings):
    return cached_ok(catalogue.categories(settings))


@ROUTES.get('/api/v1/courses', 'One page of online courses (cached; ETag)', query=catalogue.CourseQuery,
            statuses=(304,))
def course_list(settings: Settings, query: catalogue.CourseQuery):
    return cached_ok(catalogue.course_page(query, settings))


@ROUTES.get('/api/v1/courses/<course_id:int>', 'A course with its teacher, chapters and sections (cached; ETag)',
            statuses=(304, 404))
def course_detail(course_id: int, settings: Settings):
    entry = catalogue.course_detail(course_id, settings)
    or_404(entry.value, f'no course {course_id}')
    return cached_ok(entry)


def list_rows(table: Table, query: AdminPage) -> dict:
    model = table.model
    rows = model.live().order_by(model.id).paginate(query.page, 100)
    return ok(result=[model_to_dict(row, recurse=False) for row in rows])


def save(row: ContentModel, values: dict, actor: User) -> None:
    """content.save. :raise ApiError 409: a unique column (a category's name) is taken."""
    try:
        content.save(row, values, actor)
    except IntegrityError:
        raise ApiError(409, 'conflicts with an existing row', errors={'name': 'already taken'}) from None


def create_row(table: Table, body: Input, user: User) -> dict:
    values = body.model_dump()
    check_references(table, values)
    row = table.model()
    save(row, values, user)
    return ok('created', status=201, result=model_to_dict(row, recurse=False))


def change_row(table: Table, row_id: int, body: Input, user: User) -> dict:
    """The fields given change; the row is validated whole, as a creation would be."""
    row = live_row(table, row_id)
    stored = {field: row.__data__.get(field) for field in table.schema.model_fields}
    values = validated(table.schema, stored | body.model_dump(exclude_unset=True)).model_dump()
    check_references(table, values)
    save(row, values, user)
    return ok(result=model_to_dict(row, recurse=False))


def delete_row(table: Table, row_id: int, user: User) -> dict:
    """A soft delete: hidden everywhere, the row (and what hangs from it) stays."""
    content.soft_delete(live_row(table, row_id), user)
    return ok('deleted')


class Bulk(Input):
    ids: Annotated[list[Id], Field(min_length=1, max_length=500)]
    action: Literal[tuple(content.BULK)]


def bulk_rows(model: type[ContentModel], body: Bulk, user: User) -> dict:
    """One action on many rows, deleted ones included (to restore them); each row is saved, and
    audited, as a single change would be."""
    changed = content.bulk(list(model.select().where(model.id.in_(body.ids))), body.action, user)
    return ok(f'{changed} changed', changed=changed)


def declare_tables() -> None:
    """Five routes for each of the five tables, each declared with its own body models."""
    for name, table in TABLES.items():
        noun, rows, row = table.model.__name__, f'/api/v1/admin/{name}', f'/api/v1/admin/{name}/<row_id:int>'
        fixed = {'table': table}
        ROUTES.add('GET', rows, list_rows, f'{noun} rows not deleted, hidden ones too, 100 a page', auth='editor',
                   query=AdminPage, fixed=fixed)
        ROUTES.add('POST', rows, create_row, f'Add a {noun}', auth='editor', body=table.schema, statuses=(201, 409),
                   fixed=fixed)
        ROUTES.add('PATCH', row, change_row, f'Change a {noun}: only the fields given', auth='editor',
                   body=table.change, statuses=(404, 409), fixed=fixed)
        ROUTES.add('DELETE', row, delete_row, f'Hide a {noun} for good (soft delete)', auth='editor',
                   statuses=(404,), fixed=fixed)
        declare_bulk(ROUTES, rows, table.model)


def declare_bulk(routes: Routes, rows: str, model: type[ContentModel]) -> None:
    """POST {rows}/bulk for a content table (the banners' module declares its own with it)."""
    routes.add('POST', f'{rows}/bulk', bulk_rows, f'Show, hide, delete or restore {model.__name__} rows',
               auth='editor', body=Bulk, fixed={'model': model})


declare_tables()
