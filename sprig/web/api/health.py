"""GET /api/v1/health: the database, the queue, the cache and the data directory's disk, each checked."""
import shutil
from collections.abc import Callable

import tasks
from models import database
from sprig.cache.store import cache
from sprig.settings import Settings
from sprig.web.envelope import ApiError, ok
from sprig.web.routing import Routes

ROUTES = Routes()
PROBES: dict[str, Callable[[Settings], object]] = {
    'database': lambda settings: database.execute_sql('SELECT 1').fetchone(),
    'queue': lambda settings: tasks.huey.pending_count(),
    'cache': lambda settings: cache.ping(),
    'disk': lambda settings: enough_disk(settings),
}


class DiskFull(Exception):
    """Less free space under the data directory than [app] min_free_mb."""


def enough_disk(settings: Settings) -> None:
    """:raise DiskFull: the SQLite files, the queue and the outbox live there."""
    free = shutil.disk_usage(settings.app.data_dir).free // 2**20
    if free < settings.app.min_free_mb:
        raise DiskFull(f'{free} MB free in {settings.app.data_dir} (at least {settings.app.min_free_mb} wanted)')


def check(probe: Callable[[Settings], object], settings: Settings) -> str:
    try:
        probe(settings)
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'.strip()
    return 'ok'


@ROUTES.get('/api/v1/health', 'Database, queue, cache and disk checked; 503 names what is down')
def health(settings: Settings) -> dict:
    components = {name: check(probe, settings) for name, probe in PROBES.items()}
    down = sorted(name for name, state in components.items() if state != 'ok')
    if down:
        raise ApiError(503, f'unavailable: {", ".join(down)}', components=components)
    return ok(components=components)
