"""Console forms drawn from the JSON API's own body models: each field's widget follows from its JSON
Schema (an enum is a select, a boolean a checkbox, a date-time a local time in the site's zone), so
a form asks for what the API checks, and the API's errors land next to the fields they name."""
import datetime
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from peewee import Model

from sprig.web.inputs import Input

# Labels where the column's name says it poorly.
LABELS = {'is_show': 'Shown', 'orders': 'Order (lower first)', 'course_img': 'Cover image', 'image': 'Image',
          'course_id': 'Course', 'stock_total': 'Units on sale', 'pub_date': 'Published',
          'pub_sections': 'Sections published', 'sections': 'Sections planned', 'free_trail': 'Free to watch',
          'section_link': 'Video or document address', 'attachment_path': 'Attachment'}
IMAGES = {'image', 'course_img'}  # fields an upload can fill


@dataclass
class Widget:
    name: str
    label: str
    kind: str  # text, textarea, integer, decimal, boolean, select, reference, date, datetime, image, hidden
    value: Any = ''
    required: bool = False
    options: list[tuple[Any, str]] = field(default_factory=list)  # (value, label) for a select
    limits: dict[str, Any] = field(default_factory=dict)  # min, max, maxlength


def kind_of(prop: dict) -> str:
    options = [option for option in prop.get('anyOf', [prop]) if option.get('type') != 'null']
    types = {option.get('type') for option in options}
    if 'enum' in prop:
        return 'select'
    if types == {'number', 'string'}:
        return 'decimal'
    if types == {'integer'}:
        return 'integer'
    if types == {'boolean'}:
        return 'boolean'
    return {'date': 'date', 'date-time': 'datetime'}.get(prop.get('format'), 'text')


def limits_of(prop: dict) -> dict[str, Any]:
    option = next((option for option in prop.get('anyOf', [prop]) if option.get('type') != 'null'), prop)
    found = {'min': option.get('minimum'), 'max': option.get('maximum'), 'maxlength': option.get('maxLength')}
    return {name: value for name, value in found.items() if value is not None}


def shown(value: Any, zone: zoneinfo.ZoneInfo) -> Any:
    """A stored value as its input shows it (stored times are naive UTC)."""
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.UTC).astimezone(zone).strftime('%Y-%m-%dT%H:%M')
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f'{value:.2f}'
    return '' if value is None else value


def widgets(schema: type[Input], values: dict, zone: zoneinfo.ZoneInfo, choices: dict[str, list] | None = None,
            hidden: dict[str, Any] | None = None, only: tuple[str, ...] = ()) -> list[Widget]:
    """The form of schema, filled with values (a row's, or nothing for a new one). choices: a
    select's options for fields that name another row; hidden: fields fixed by the page; only:
    these fields, in this order (default: all of the schema's)."""
    described = schema.model_json_schema()
    props, required = described['properties'], set(described.get('required', ()))
    choices, hidden = choices or {}, hidden or {}
    found = [Widget(name, '', 'hidden', value) for name, value in hidden.items()]
    for name in only or [name for name in props if name not in hidden]:
        prop = props[name]
        model_field = schema.model_fields[name]
        default = '' if model_field.is_required() else model_field.get_default(call_default_factory=True)
        widget = Widget(name, LABELS.get(name, name.replace('_', ' ').capitalize()), kind_of(prop),
                        shown(values.get(name, default), zone), name in required, limits=limits_of(prop))
        if name in choices:
            widget.kind, widget.options = 'reference', [('', '—')] * (name not in required) + choices[name]
        elif widget.kind == 'select':
            widget.options = [(option, option.replace('_', ' ')) for option in prop['enum']]
        elif name in IMAGES:
            widget.kind = 'image'
        elif widget.kind == 'text' and widget.limits.get('maxlength', 0) > 255:
            widget.kind = 'textarea'
        found.append(widget)
    return found


def row_values(row: Model) -> dict:
    """A row's fields by name (a reference as its id)."""
    return dict(row.__data__)


def named(rows: list[Model], label: str = 'name') -> list[tuple[int, str]]:
    """Options for a select of rows: (id, its label)."""
    return [(row.id, f'{getattr(row, label)} (#{row.id})') for row in rows]
