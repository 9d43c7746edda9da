"""The engine: Huey plus task records you can poll, retries with jitter, interval tasks run by one
elected leader, and what a task author declares beyond Huey (idempotent, secret, gone).

Built from settings, as Huey's own examples build it: `SprigHuey(settings)` opens the storage
[queue] url names (storage.py). Records: records.py; the consumer and its leader: consumer.py.

Huey's private parts this relies on, where it has no public hook (check them on a Huey upgrade):
- `Huey._execute`: wrapped, to know which task a worker thread runs (put_result, delete).
- `Huey._requeue_task`: wrapped, to cap and jitter retry delays and to end a task whose retry
  cannot be queued.
- `Huey._revoke_keys`, `Huey._check_revoked`: called by is_revoked(), which reads the revoke
  flags in one round trip and runs a task when the storage cannot say.
- `Consumer._signal_actions` (consumer.py): SIGTERM made graceful like SIGINT.
- `Consumer._set_signal_handlers` (consumer.py): the embedded consumer keeps the host's handlers.
- `Scheduler.interval` (consumer.py): set below Huey's whole-second minimum.
- `Scheduler._next_periodic` (consumer.py): a consumer that does not lead yet checks crontabs
  again at its next tick; `Huey._registry.periodic_tasks`: whether there are any to check.
- `SqliteStorage._create_connection`, `._conn`, `.begin_sql`, `.lock` (storage.py): a connection
  per thread, synchronous=NORMAL, BEGIN IMMEDIATE.
- `RedisStorage.queue_key`, `.result_key`, `.pool`, `.read_timeout` (storage.py): the direct
  connection's commands name Huey's keys.
"""
import datetime
import inspect
import json
import logging
import math
import random
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from huey import Huey, signals
from huey.api import Task, TaskWrapper
from huey.constants import EmptyData

from sprig import logs
from sprig.metrics import metrics
from sprig.queue.consumer import SprigConsumer
from sprig.queue.records import (
    STUB_TTL,
    TRANSITIONS,
    RecordWriter,
    finished,
    hot_update,
    move_back,
    new_row,
    statements,
    stub_value,
    undeliverable,
)
from sprig.queue.storage import LOST_REPLY_ERRORS, QUEUE_ERRORS, storage_options
from sprig.settings import Settings

log = logging.getLogger('sprig.engine')
# How a run ended, by the signal that says so (a failure with retries left counts as retried).
OUTCOMES = {signals.SIGNAL_COMPLETE: 'succeeded', signals.SIGNAL_ERROR: 'failed', signals.SIGNAL_LOCKED: 'failed',
            signals.SIGNAL_TIMEOUT: 'failed', signals.SIGNAL_RATE_LIMITED: 'failed',
            signals.SIGNAL_REVOKED: 'revoked', signals.SIGNAL_CANCELED: 'revoked', signals.SIGNAL_EXPIRED: 'expired',
            signals.SIGNAL_INTERRUPTED: 'interrupted'}


@dataclass(frozen=True)
class TaskInfo:
    """What the engine knows of a task beyond Huey: how to show and how to run it again."""

    wrapper: TaskWrapper
    params: tuple[str, ...]
    secret: frozenset[str]
    idempotent: bool
    gone: Callable | None = None  # called with the task's arguments when it will never run


@dataclass(frozen=True)
class Sweep:
    name: str
    every: float
    func: Callable[[], object]


@dataclass(frozen=True)
class Interval:
    name: str
    every: int | Callable[[Settings], int]  # seconds, or a function of the settings (SprigHuey.period)
    wrapper: TaskWrapper


class SprigHuey(Huey):
    """Huey plus task records, retry jitter, interval tasks and the Sprig consumer."""

    def __init__(self, settings: Settings, **options):
        """Huey for [queue]: the storage its url names, immediate (in-process) when it says so;
        `options` are Huey's own (utc, results, serializer...)."""
        self.settings = settings
        options = {'immediate': settings.queue.immediate, **storage_options(settings.queue.url), **options}
        super().__init__(settings.queue.name, **options)
        self.infos: dict[str, TaskInfo] = {}
        self.intervals: dict[str, Interval] = {}
        self.sweeps: dict[str, Sweep] = {}
        self.consumer_id: str | None = None  # set in a process that runs a consumer
        self.leader = False  # whether this process's consumer holds the scheduler lease
        self.queue_failed_at = -math.inf  # time.monotonic() of this process's last failed dequeue
        self.running = threading.local()  # .task: the task this worker thread is executing
        self.writer = RecordWriter(self)
        self.signal()(self.record_signal)
        self.signal()(self.count_signal)
        self.signal(signals.SIGNAL_REVOKED, signals.SIGNAL_CANCELED, signals.SIGNAL_EXPIRED)(self.on_dropped)
        self.post_execute()(self.record_result)

    def configure(self, settings: Settings) -> None:
        """Rebind to other settings (the web app's, a test's): the queue they name and its options."""
        options = storage_options(settings.queue.url)
        self.settings, self.name = settings, settings.queue.name
        self.storage_class = options.pop('storage_class')
        self.storage_kwargs = options
        changed = self.immediate != settings.queue.immediate
        self.immediate = settings.queue.immediate  # Huey's setter opens the storage anew on a change
        if not changed:
            self.storage = self.create_storage()

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        """[app] timezone: crontab schedules are read in it."""
        return zoneinfo.ZoneInfo(self.settings.app.timezone)

    def period(self, interval: 'Interval') -> int:
        """An interval task's period in seconds, from the settings this Huey has now."""
        every = interval.every(self.settings) if callable(interval.every) else interval.every
        return max(1, int(every))

    def record_result(self, task: Task, value, exc: BaseException | None) -> None:
        """Post-execute hook: keep a short summary of what the task returned, for people; the
        COMPLETE signal, which comes next, writes it with the final state in one statement."""
        if exc is None and value is not None and self.tracking:
            task.result_summary = json.dumps(value, default=str)[:500]

    def record_signal(self, signal: str, task: Task, *args) -> None:
        """Signal receiver: move the task's record (runs in the thread that emitted the signal)."""
        move = TRANSITIONS.get(signal)
        if move is not None and self.tracking:
            move(self, task, *args)

    def count_signal(self, signal: str, task: Task, *args) -> None:
        """Signal receiver: a run's end counted in the metrics, by its outcome."""
        outcome = OUTCOMES.get(signal)
        if outcome is not None:
            if outcome == 'failed' and task.retries:
                outcome = 'retried'
            metrics.task(task.name, outcome)

    @property
    def tracking(self) -> bool:
        return self.settings.queue.records and not self.immediate

    def notify_interrupted_tasks(self) -> None:
        super().notify_interrupted_tasks()
        self.writer.flush()  # the process is about to exit: commit what the signals said

    def task(self, *args, idempotent: bool = False, secret: tuple[str, ...] = (), gone: Callable | None = None,
             **options) -> Callable:
        """huey.task, with Huey's arguments (`@huey.task(2, 1)` is retries=2, retry_delay=1), plus:
        `idempotent` (safe to run twice, so re-run when its consumer dies), `secret` (argument
        names masked wherever the arguments are shown) and `gone` (called with the task's
        arguments when it ends without running: revoked, expired or lost; to undo what
        enqueueing it reserved)."""
        register = super().task(*args, **options)

        def decorate(func: Callable) -> TaskWrapper:
            wrapper = register(func)
            params = tuple(inspect.signature(func).parameters)
            self.infos[task_name(wrapper)] = TaskInfo(wrapper, params, frozenset(secret), idempotent, gone)
            return wrapper
        return decorate

    def on_dropped(self, signal: str, task: Task, *args) -> None:
        """Signal receiver (revoked, canceled, expired): the task will not run."""
        self.call_gone(task.name, task.args, task.kwargs)

    def call_gone(self, name: str, args, kwargs) -> None:
        """Undo what enqueueing a task reserved, now that it will never run (its `gone`)."""
        info = self.infos.get(name)
        if info and info.gone:
            try:
                info.gone(*args, **kwargs)
            except Exception:
                log.exception('could not undo %s(%s, %s)', name, args, kwargs)

    def every(self, seconds: int | Callable[[Settings], int], **options) -> Callable:
        """An interval task, run every `seconds` (>= 1) by the leader consumer. `seconds` may be
        a function of the settings, read whenever the leader needs the period (after configure()
        too): `@huey.every(lambda settings: settings.banner.refresh_interval)`."""
        def decorate(func: Callable) -> TaskWrapper:
            wrapper = self.task(**options)(func)
            self.intervals[task_name(wrapper)] = Interval(task_name(wrapper), seconds, wrapper)
            return wrapper
        return decorate

    def leader_sweep(self, seconds: float) -> Callable:
        """A function the leader consumer calls every `seconds` (on a beat, so every 2 s at most)
        and as it starts to lead: not a task, so no queue and no record, for a check that mostly
        finds nothing to do (an interval task would leave a record every time)."""
        def decorate(func: Callable[[], object]) -> Callable[[], object]:
            self.sweeps[func.__name__] = Sweep(func.__name__, seconds, func)
            return func
        return decorate

    def create_consumer(self, **options) -> 'SprigConsumer':
        return SprigConsumer(self, **options)

    def enqueue(self, task):
        """Record the task as it reaches the queue: a stub in the same step (see queues.py), its
        row in the writer's next batch. An id the caller gets is never unknown, and a task the
        queue refuses leaves no record behind."""
        if not self.tracking or not isinstance(task, Task):
            return super().enqueue(task)
        if getattr(task, 'seen', False):
            move_back(self, task)
            return super().enqueue(task)
        row = new_row(self, task)
        with self.storage.stubs.stubbed(task.id, stub_value(row), STUB_TTL):
            result = super().enqueue(task)
        self.writer.add(hot_update(statements().insert, *row))
        return result

    def _execute(self, task, timestamp):
        outer, self.running.task = getattr(self.running, 'task', None), task  # from here its body runs
        started = time.perf_counter()
        try:
            with logs.working_on(task_id=task.id, task=task.name, consumer=self.consumer_id):
                return super()._execute(task, timestamp)
        finally:
            self.running.task = outer  # a task run inside another (immediate mode)
            metrics.task_time(task.name, time.perf_counter() - started)

    def delete(self, key):
        """Huey's delete. Huey clears a running task's revoke flag right after the task ran, before
        it records the outcome: should the storage fail there (Redis restarting), the outcome is
        recorded all the same, where Huey would skip the hooks that record it."""
        try:
            return super().delete(key)
        except QUEUE_ERRORS as exc:
            if getattr(self.running, 'task', None) is None:
                raise
            log.warning('could not clear %s: %s', key, exc)
            return False

    def put_result(self, key, value):
        """Store a task's result. Should the storage fail here (Redis restarting), the task's
        outcome is still recorded: Huey would skip the hooks that record it."""
        try:
            return super().put_result(key, value)
        except QUEUE_ERRORS as exc:
            if getattr(self.running, 'task', None) is None:
                raise
            log.warning('could not store the result of task %s: %s', key, exc)

    def dequeue(self):
        try:
            data = self.storage.dequeue()
        except LOST_REPLY_ERRORS:
            self.queue_failed_at = time.monotonic()  # a reply lost as Redis went down loses its task
            raise
        if data is None:
            return None
        try:
            return self.deserialize_task(data)
        except Exception as exc:  # Huey drops such a message: its record says why, then Huey logs it
            if self.tracking:
                undeliverable(self, data, exc)
            raise

    def is_revoked(self, task, timestamp=None, peek=True):
        """Huey's check, but a consumer about to run a task it has taken off the queue (peek=False)
        runs it when the storage cannot say whether it was revoked (Redis restarting), where Huey
        would drop it; and a revoke-once flag it could not clear still counts."""
        if peek:
            return super().is_revoked(task, timestamp, peek)
        keys = self._revoke_keys(task)
        try:
            data = self.storage.peek_many(keys)
        except QUEUE_ERRORS as exc:
            log.warning('could not check whether %s was revoked; running it: %s', task.id, exc)
            return False
        for key in keys:
            revoked, restore = self._check_revoked(data.get(key, EmptyData), timestamp, peek)
            if restore:
                try:
                    super().delete(key)
                except QUEUE_ERRORS as exc:
                    log.warning('could not clear the revoke flag %s: %s', key, exc)
            if revoked:
                return True
        return False

    def read_schedule(self, timestamp=None):
        due = super().read_schedule(timestamp)
        for task in due:
            task.seen = True  # recorded when first enqueued: its record moves, it is not new
        return due

    def _requeue_task(self, task, timestamp, retry_eta=None):
        # Huey multiplies the delay by the backoff; this adds a cap and full jitter, so that
        # tasks failing together do not all retry in the same instant.
        if retry_eta is None and task.retry_delay:
            delay = min(float(task.retry_delay), self.settings.queue.max_retry_delay)
            retry_eta = timestamp + datetime.timedelta(seconds=random.uniform(delay / 2, delay))
            if task.retry_backoff:
                task.retry_delay = min(task.retry_delay * task.retry_backoff, self.settings.queue.max_retry_delay)
        task.seen = True
        try:
            return super()._requeue_task(task, timestamp, retry_eta)
        except QUEUE_ERRORS as exc:  # the retry cannot be queued: the task ends here, and says why
            finished(self, task, 'failed', error=f'not retried, the queue was unavailable: {exc}'[:2000])
            self.call_gone(task.name, task.args, task.kwargs)


def task_name(wrapper: TaskWrapper) -> str:
    """The name Huey gives the wrapper's tasks (Task.name): the function's, unless name= was set."""
    return wrapper.task_class.__name__
