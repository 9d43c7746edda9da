"""GET /api/v1/health: the database, the queue and the cache, each checked."""
from collections.abc import Callable

import tasks
from models import database
from sprig.cache.store import cache
from sprig.web.envelope import ApiError, ok
from sprig.web.routing import Routes

ROUTES = Routes()
PROBES: dict[str, Callable[[], object]] = {
    'database': lambda: database.execute_sql('SELECT 1').fetchone(),
    'queue': lambda: tasks.huey.pending_count(),
    'cache': lambda: cache.ping(),
}


def check(probe: Callable[[], object]) -> str:
    try:
        probe()
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'.strip()
    return 'ok'


@ROUTES.get('/api/v1/health', 'Database, queue and cache checked; 503 names what is down')
def health() -> dict:
    components = {name: check(probe) for name, probe in PROBES.items()}
    down = sorted(name for name, state in components.items() if state != 'ok')
    if down:
        raise ApiError(503, f'unavailable: {", ".join(down)}', components=components)
    return ok(components=components)
