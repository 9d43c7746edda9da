"""HTML pages: one autoescaping Jinja2 environment over views/, the page routes and static files."""
from bottle import Bottle, static_file
from jinja2 import Environment, FileSystemLoader, select_autoescape

from settings import PROJECT_DIR, Settings

VIEWS = PROJECT_DIR / 'views'
STATIC = PROJECT_DIR / 'static'


def create_env(settings: Settings) -> Environment:
    # Bottle's own Jinja2 adapter does not escape; this environment always does.
    env = Environment(loader=FileSystemLoader(VIEWS), autoescape=select_autoescape(default=True),
                      auto_reload=settings.app.debug)
    env.globals['site'] = {'base_url': settings.app.base_url}
    return env


def install_pages(app: Bottle, env: Environment) -> None:
    """Mount the pages and /static/ on app."""

    @app.get('/')
    def home() -> str:
        return env.get_template('home.html').render()

    @app.get('/static/<path:path>')
    def static(path: str):
        return static_file(path, root=str(STATIC))
