"""GET /api/v1/health: the database, the queue, the cache and the data directory's disk, each
checked; and GET /metrics for Prometheus."""
import hmac
import ipaddress
import shutil
from collections.abc import Callable, Iterator

from bottle import request, response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

import tasks
from models import database
from sprig.cache.store import cache
from sprig.metrics import metrics
from sprig.queue import dashboard
from sprig.settings import Settings
from sprig.web.envelope import ApiError, client_address, ok
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


def may_scrape(settings: Settings) -> bool:
    """The request holds [metrics] token, and comes from an allowed address when a list is set."""
    header = request.get_header('Authorization', '')
    given = header[7:].strip() if header.startswith('Bearer ') else ''
    if not hmac.compare_digest(given.encode(), settings.metrics.token.encode()):
        return False
    allowed = [ipaddress.ip_network(part.strip(), strict=False) for part in settings.metrics.allow.split(',')
               if part.strip()]
    try:
        address = ipaddress.ip_address(client_address())
    except ValueError:
        return not allowed
    return not allowed or any(address in network for network in allowed)


@ROUTES.get('/metrics')
def prometheus(settings: Settings) -> str:
    """Prometheus' text format; 404 with metrics off, 403 without the token (or an allowed address)."""
    if not metrics.on:
        raise ApiError(404, 'metrics are off: set [metrics] token to turn them on')
    if not may_scrape(settings):
        raise ApiError(403, 'a bearer token in [metrics] token is needed here', headers={'WWW-Authenticate': 'Bearer'})
    response.content_type = CONTENT_TYPE_LATEST
    return metrics.scrape(QueueCollector())


class QueueCollector:
    """The queue's gauges, read at scrape time as the dashboard reads them."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        overview = dashboard.queue_overview(tasks.huey)
        yield GaugeMetricFamily('sprig_queue_pending', 'Tasks waiting in the queue', value=overview['pending'])
        yield GaugeMetricFamily('sprig_queue_scheduled', 'Tasks waiting for their time', value=overview['scheduled'])
        yield GaugeMetricFamily('sprig_consumers_alive', 'Consumers with a recent heartbeat',
                                value=len(overview['consumers']))
        leader = GaugeMetricFamily('sprig_consumer_leader', 'The consumer that leads (1)', labels=('consumer',))
        if overview['leader']:
            leader.add_metric((overview['leader'],), 1)
        yield leader
