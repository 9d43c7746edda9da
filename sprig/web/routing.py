"""Route declarations and the plugin that enforces them.

Each module of routes keeps a `ROUTES = Routes()` and declares every route once, on a plain
module-level function:

    @ROUTES.post('/api/v1/admin/banners', 'Add a banner', auth='admin', body=NewBanner, statuses=(201,))
    def create_banner(body: NewBanner) -> dict: ...

The declaration (a Route) is the route's config in Bottle. RoutePlugin reads it to require the
sign-in it names and to parse its body and query, and openapi.py reads the same object, so the
documentation cannot disagree with what is enforced. A handler names what it needs as parameters:
`user`, `body`, `query`, `settings`, `auth`, `render`; the plugin passes those and nothing else.
"""
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bottle import Bottle, redirect, request
from peewee import Expression, Model, ModelSelect

from sprig.settings import Settings
from sprig.web.auth import LEVELS, Auth
from sprig.web.envelope import ApiError
from sprig.web.inputs import Input, parse_body, parse_query


@dataclass(frozen=True)
class Route:
    """One route: where it is, who may call it, what it reads, what it may answer."""

    method: str
    path: str
    callback: Callable
    summary: str = ''  # required under /api/v1/ (the OpenAPI document refuses a route without)
    auth: str = 'public'  # public, user or admin
    body: type[Input] | None = None
    query: type[Input] | None = None
    # What it may answer besides 200, 400 (when it reads input), 401/403 (from auth) and 503.
    statuses: tuple[int, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)  # keyword arguments the declaration fixes

    def __post_init__(self) -> None:
        if self.auth not in LEVELS:
            raise ValueError(f'{self.method} {self.path}: auth must be one of {", ".join(LEVELS)}')

    @property
    def page(self) -> bool:
        """A page, not the API: a visitor who must sign in is sent to the sign-in page."""
        return not self.path.startswith('/api/')


class Routes(list[Route]):
    """A module's route declarations, in the order declared."""

    def add(self, method: str, path: str, callback: Callable, summary: str = '', **options: Any) -> Route:
        declared = Route(method, path, callback, summary, **options)
        self.append(declared)
        return declared

    def route(self, method: str, path: str, summary: str = '', **options: Any) -> Callable:
        def decorate(callback: Callable) -> Callable:
            self.add(method, path, callback, summary, **options)
            return callback
        return decorate

    def get(self, path: str, summary: str = '', **options: Any) -> Callable:
        return self.route('GET', path, summary, **options)

    def post(self, path: str, summary: str = '', **options: Any) -> Callable:
        return self.route('POST', path, summary, **options)

    def patch(self, path: str, summary: str = '', **options: Any) -> Callable:
        return self.route('PATCH', path, summary, **options)

    def delete(self, path: str, summary: str = '', **options: Any) -> Callable:
        return self.route('DELETE', path, summary, **options)


def mount(app: Bottle, routes: list[Route]) -> None:
    for declared in routes:
        app.route(declared.path, declared.method, declared.callback, declared=declared)


class RoutePlugin:
    """Bottle plugin: for a declared route, the sign-in it requires first, then its body and query
    parsed, then the callback called with what it names (see the module's docstring)."""

    name = 'sprig.routes'
    api = 2

    def __init__(self, settings: Settings, auth: Auth, render: Callable[..., str]):
        self.settings, self.auth, self.render = settings, auth, render
        self.limit = settings.app.max_body_kb * 1024

    def apply(self, callback: Callable, route) -> Callable:
        declared = route.config.get('declared')
        if not isinstance(declared, Route):
            return callback
        wanted = set(inspect.signature(callback).parameters)
        given = {name: value for name, value in
                 (('settings', self.settings), ('auth', self.auth), ('render', self.render)) if name in wanted}

        needs_user = declared.auth != 'public' or 'user' in wanted  # a public route reads no token

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            user = self.signed_in(declared) if needs_user else None
            inputs = {'user': user} if 'user' in wanted else {}
            if declared.body is not None:
                inputs['body'] = parse_body(declared.body, self.limit)
            if declared.query is not None:
                inputs['query'] = parse_query(declared.query)
            return callback(*args, **kwargs, **given, **inputs, **declared.fixed)
        return wrapper

    def signed_in(self, declared: Route):
        """The user the route requires; a page sends a visitor who is not signed in to sign in,
        and back here afterwards (the query string, with a list's filters, included)."""
        if declared.page and declared.auth != 'public' and self.auth.current_user() is None:
            here = request.fullpath + (f'?{request.query_string}' if request.query_string else '')
            redirect('/login?next=' + quote(here))
        return self.auth.require(declared.auth)


def or_404(found: Any, missing: str) -> Any:
    """:raise ApiError 404: saying `missing`, when found is None."""
    if found is None:
        raise ApiError(404, missing)
    return found


def get_or_404(query: ModelSelect, *where: Expression, missing: str) -> Model:
    """The first row of query where `where` holds. :raise ApiError 404: saying `missing`."""
    return or_404(query.where(*where).first() if where else query.first(), missing)
