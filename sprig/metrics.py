"""Prometheus metrics, with prometheus_client in its multiprocess mode: every web process and every
consumer of one machine writes its counters to files in one directory, and a scrape of any web
process's /metrics reads them all, summed. With [metrics] token empty (the default) nothing is
counted and /metrics answers 404: the instrumented paths cost one attribute test.

Gauges of the queue (pending, scheduled), the consumers alive and the leader are read at scrape
time (sprig/web/api/health.py), not kept in files."""
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from sprig.settings import Settings

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RUN_TIME = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


class Metrics:
    """Sprig's metrics, or none: configure() turns them on when [metrics] token is set."""

    def __init__(self):
        self.on = False
        self.directory: Path | None = None

    def configure(self, settings: Settings) -> None:
        self.on = bool(settings.metrics.token)
        if not self.on:
            return
        self.directory = settings.metrics.directory
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # prometheus_client picks its value class when imported, from this variable: set both, so
        # the settings decide, not the environment the process happened to start with.
        os.environ['PROMETHEUS_MULTIPROC_DIR'] = str(self.directory)
        values.ValueClass = values.MultiProcessValue()
        self.children: dict[tuple, object] = {}
        registry = None  # not the default registry: configure() may run again (tests)
        self.requests = Counter('sprig_http_requests', 'HTTP requests answered', ('route', 'method', 'status'),
                                registry=registry)
        self.latency = Histogram('sprig_http_request_duration_seconds', 'Time to answer a request', ('route',),
                                 buckets=LATENCY, registry=registry)
        self.tasks = Counter('sprig_tasks', 'Task runs that ended, by outcome', ('name', 'outcome'), registry=registry)
        self.run_time = Histogram('sprig_task_duration_seconds', 'Time a task ran', ('name',), buckets=RUN_TIME,
                                  registry=registry)
        self.cache = Counter('sprig_cache_reads', 'Cached reads: hit, miss or bypass (the cache was down)',
                             ('outcome',), registry=registry)
        self.presses = Counter('sprig_seckill_presses', 'Flash-sale presses, by answer', ('answer',),
                               registry=registry)

    def child(self, metric, *labels: str):
        """metric.labels(*labels), kept: prometheus_client takes a lock to find it on every call."""
        key = (metric, labels)
        found = self.children.get(key)
        if found is None:
            found = self.children.setdefault(key, metric.labels(*labels))
        return found

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        if self.on:
            self.child(self.requests, route, method, str(status)).inc()
            self.child(self.latency, route).observe(seconds)

    def task(self, name: str, outcome: str) -> None:
        if self.on:
            self.child(self.tasks, name, outcome).inc()

    def task_time(self, name: str, seconds: float) -> None:
        if self.on:
            self.child(self.run_time, name).observe(seconds)

    def cache_read(self, outcome: str) -> None:
        if self.on:
            self.child(self.cache, outcome).inc()

    def press(self, answer: str) -> None:
        if self.on:
            self.child(self.presses, answer).inc()

    def scrape(self, *collectors: object) -> bytes:
        """Every process's counters summed, and what the collectors read now."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))
        for collector in collectors:
            registry.register(collector)
        return generate_latest(registry)

    def forget_dead(self) -> None:
        """Drop the files of processes that are gone (at start-up, on this machine): their counts
        would stay in every sum for ever. A counter that drops is a reset to Prometheus."""
        if not self.on:
            return
        for path in self.directory.glob('*.db'):
            pid = path.stem.rsplit('_', 1)[-1]
            if pid.isdigit() and not alive(int(pid)):
                path.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


metrics = Metrics()
