"""Staff lists: the search, filters, sort and page that every admin list takes, from the JSON API
or the console's pages alike, applied to a query of the listed table."""
import math
from dataclasses import dataclass
from typing import Annotated, Any

from peewee import Field as Column
from peewee import ModelSelect
from pydantic import ConfigDict, Field, StringConstraints

from sprig.web.inputs import Input

PAGE_SIZE = 25


class ListQuery(Input):
    """Other parameters (a list's own filters) are read by the list itself."""

    model_config = ConfigDict(extra='allow')
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ''
    sort: Annotated[str, StringConstraints(max_length=40)] = ''
    page: Annotated[int, Field(ge=1, le=100_000)] = 1

    def filter(self, name: str) -> str:
        """A filter's value from the query string ('' when not given)."""
        return str((self.model_extra or {}).get(name) or '')


@dataclass
class Page:
    rows: list
    count: int
    page: int
    pages: int


def searched(query: ModelSelect, columns: tuple[Column, ...], words: str) -> ModelSelect:
    """Rows where any of the text columns holds words, whatever its case (ILIKE on PostgreSQL, LIKE
    on SQLite, as the course search: a % or _ matches more, never less), or whose id is words."""
    if not words:
        return query
    found = [column.contains(words) for column in columns]
    if words.isdigit() and len(words) < 10:
        found.append(query.model.id == int(words))
    where = found[0]
    for condition in found[1:]:
        where |= condition
    return query.where(where)


def sorted_by(query: ModelSelect, sort: str, columns: dict[str, Column], default: str) -> tuple[ModelSelect, str]:
    """The query ordered by sort ('name' or '-name', one of columns), else by default; and the
    sort applied."""
    if sort.lstrip('-') not in columns:
        sort = default
    column = columns[sort.lstrip('-')]
    return query.order_by(column.desc() if sort.startswith('-') else column, query.model.id.desc()), sort


def paged(query: ModelSelect, page: int, size: int = PAGE_SIZE) -> Page:
    count = query.count()
    pages = max(1, math.ceil(count / size))
    return Page(list(query.paginate(min(page, pages), size)), count, min(page, pages), pages)


def api_page(page: Page, view: Any) -> dict:
    """A page of rows as the JSON API answers it."""
    return {'result': [view(row) for row in page.rows], 'count': page.count, 'page': page.page, 'pages': page.pages}
