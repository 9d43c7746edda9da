"""The task engine on top of Huey: records you can poll, retries with jitter, interval schedules
run by one elected leader, consumer heartbeats and lost-task recovery.

- Every task enqueued gets a record: a stub written with the enqueue itself (queues.py), its
  TaskRecord row within FLUSH_EVERY (RecordWriter batches every change). Huey's
  signals move it through queued, scheduled, started, retrying, succeeded, failed, revoked,
  expired and lost.
- Every consumer beats in ConsumerBeat. One of them holds the "scheduler" Lease: it alone runs
  crontab and interval tasks and marks the tasks of dead consumers lost (an idempotent task is
  re-enqueued once instead).
- SIGINT and SIGTERM both stop a consumer gracefully; what is still running when the shutdown
  timeout ends is re-enqueued (idempotent) or marked lost.
"""
import datetime
import functools
import inspect
import json
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from huey import Huey, signals
from huey.api import Task, TaskWrapper
from huey.constants import EmptyData
from huey.consumer import Consumer, Scheduler
from peewee import Case

from models import ConsumerBeat, Lease, Schedule, TaskRecord, create_tables, database, utcnow
from queues import LOST_REPLY_ERRORS, QUEUE_ERRORS

log = logging.getLogger('sprig.engine')
TERMINAL = ('succeeded', 'failed', 'revoked', 'expired', 'lost')
BEAT_EVERY = 2  # seconds between heartbeats
LEASE_TTL = 6  # a dead leader is replaced within this many seconds
TICK = 0.25  # the coordinator's and scheduler's clock, in seconds
FLUSH_EVERY = 0.02  # seconds a record change may wait before its batch is committed
STUB_TTL = 120  # seconds a new task's stub answers for its record, which lands far sooner


@dataclass(frozen=True)
class TaskInfo:
    """What the engine knows of a task beyond Huey: how to show and how to run it again."""

    wrapper: TaskWrapper
    params: tuple[str, ...]
    secret: frozenset[str]
    idempotent: bool
    gone: Callable | None = None  # called with the task's arguments when it will never run


@dataclass(frozen=True)
class Interval:
    name: str
    every: int
    wrapper: TaskWrapper


def seconds_ago(seconds: float) -> datetime.datetime:
    return utcnow() - datetime.timedelta(seconds=seconds)


def to_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """Huey's etas are naive UTC already (utc=True); aware ones are converted."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


class SprigHuey(Huey):
    """Huey plus task records, retry jitter, interval tasks and the Sprig consumer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.infos: dict[str, TaskInfo] = {}
        self.intervals: dict[str, Interval] = {}
        self.consumer_id: str | None = None  # set in a process that runs a consumer
        self.leader = False  # whether this process's consumer holds the scheduler lease
        self.max_retry_delay = 300.0  # tasks.bind_queue sets these from the settings
        self.shutdown_timeout = 5.0
        self.heartbeat_timeout = 10.0
        self.records = True
        self.timezone = zoneinfo.ZoneInfo('UTC')  # crontab schedules are read in it
        self.queue_failed_at = -math.inf  # time.monotonic() of this process's last failed dequeue
        self.running = threading.local()  # .task: the task this worker thread is executing
        self.writer = RecordWriter(self)
        self.signal()(self.record_signal)
        self.signal(signals.SIGNAL_REVOKED, signals.SIGNAL_CANCELED, signals.SIGNAL_EXPIRED)(self.on_dropped)
        self.post_execute()(self.record_result)

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

    @property
    def tracking(self) -> bool:
        return self.records and not self.immediate

    def notify_interrupted_tasks(self) -> None:
        super().notify_interrupted_tasks()
        self.writer.flush()  # the process is about to exit: commit what the signals said

    def task(self, *, idempotent: bool = False, secret: tuple[str, ...] = (), gone: Callable | None = None,
             **options) -> Callable:
        """huey.task, plus: `idempotent` (safe to run twice, so re-run when its consumer dies),
        `secret` (argument names masked wherever the arguments are shown) and `gone` (called
        with the task's arguments when it ends without running: revoked, expired or lost; to
        undo what enqueueing it reserved)."""
        register = super().task(**options)

        def decorate(func: Callable) -> TaskWrapper:
            wrapper = register(func)
            params = tuple(inspect.signature(func).parameters)
            self.infos[task_name(wrapper)] = TaskInfo(wrapper, params, frozenset(secret), idempotent, gone)
            return wrapper
        return decorate

    def on_dropped(self, signal: str, task: Task, *args) -> None:
        """Signal receiver (revoked, canceled, expired): the task will not run."""
        call_gone(self, task.name, task.args, task.kwargs)

    def every(self, seconds: int, **options) -> Callable:
        """An interval task: run every `seconds` (>= 1) by the leader consumer."""
        def decorate(func: Callable) -> TaskWrapper:
            wrapper = self.task(**options)(func)
            self.intervals[task_name(wrapper)] = Interval(task_name(wrapper), max(1, int(seconds)), wrapper)
            return wrapper
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
        try:
            return super()._execute(task, timestamp)
        finally:
            self.running.task = outer  # a task run inside another (immediate mode)

    def delete(self, key):
        task = getattr(self.running, 'task', None)
        if task is not None and key == task.revoke_id:
            # Huey clears a revoke flag set while the task ran, one more round trip per task;
            # Sprig never revokes a started task (its API answers 409), so there is none to clear
            # (but for a revoke racing the start's record: a retry clears it, _requeue_task).
            return False
        return super().delete(key)

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
            return super().dequeue()
        except LOST_REPLY_ERRORS:
            self.queue_failed_at = time.monotonic()  # a reply lost as Redis went down loses its task
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
            delay = min(float(task.retry_delay), self.max_retry_delay)
            retry_eta = timestamp + datetime.timedelta(seconds=random.uniform(delay / 2, delay))
            if task.retry_backoff:
                task.retry_delay = min(task.retry_delay * task.retry_backoff, self.max_retry_delay)
        task.seen = True
        try:
            super().delete(task.revoke_id)  # see delete(): a flag left by a revoke racing the start
            return super()._requeue_task(task, timestamp, retry_eta)
        except QUEUE_ERRORS as exc:  # the retry cannot be queued: the task ends here, and says why
            finished(self, task, 'failed', error=f'not retried, the queue was unavailable: {exc}'[:2000])
            call_gone(self, task.name, task.args, task.kwargs)


def call_gone(huey: SprigHuey, name: str, args, kwargs) -> None:
    info = huey.infos.get(name)
    if info and info.gone:
        try:
            info.gone(*args, **kwargs)
        except Exception:
            log.exception('could not undo %s(%s, %s)', name, args, kwargs)


def task_name(wrapper: TaskWrapper) -> str:
    """The name Huey gives the wrapper's tasks (Task.name): the function's, unless name= was set."""
    return wrapper.task_class.__name__


class RecordWriter:
    """Commits this process's record changes in batches, one transaction every FLUSH_EVERY s.

    A worker hands its change over and goes on: one commit per batch instead of one per
    change, and no worker waits on SQLite's write lock. The price: a process killed (SIGKILL)
    loses the changes of its last FLUSH_EVERY seconds, so such a record stays a step behind.
    Changes are applied in the order given, whatever thread gave them.
    """

    def __init__(self, huey: 'SprigHuey'):
        self.huey = huey
        self.pending: list[Change | Start] = []
        self.guard = threading.Lock()  # guards `pending`
        self.flushing = threading.Lock()  # one batch at a time, so batches stay in order
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def add(self, change: 'Change | Start') -> None:
        with self.guard:
            self.pending.append(change)
            if self.thread is None or self.pid != os.getpid():  # none yet, or a forked child
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self.run, name='RecordWriter', daemon=True)
                self.thread.start()

    def run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY)
            self.flush()

    def flush(self) -> None:
        with self.flushing:
            with self.guard:
                batch, self.pending = self.pending, []
            if not batch:
                return
            try:
                with database.atomic():
                    apply(batch, self.huey)
            except Exception:
                log.exception('could not write %d task record changes; retrying', len(batch))
                database.manual_close()  # perhaps broken: not back to the pool
                with self.guard:
                    self.pending[:0] = batch


Change = Callable[[], object] | tuple[str, tuple]


def hot_update(sql: str, *params) -> tuple[str, tuple]:
    """A change for the writer as ready SQL (see statements()): no Peewee query to build."""
    return sql, params


@dataclass(frozen=True)
class Start:
    """A task's start: an update of its row, which the producer's batch may not have inserted
    yet; only then is the row built (from `task`) and inserted here."""

    task: Task
    params: tuple


def apply(batch: list[Change | Start], huey: 'SprigHuey') -> None:
    """Run a batch in order. Ready statements between two Peewee queries go in one executemany
    per statement: every insert first, then every start, then every finish, which keeps each
    task's own order (its row, then started, then finished)."""
    runs: dict[str, list[tuple]] = {}
    starts: list[Start] = []
    for change in batch:
        if isinstance(change, Start):
            starts.append(change)
        elif callable(change):
            execute_runs(runs, starts, huey)
            runs, starts = {}, []
            change()
        else:
            sql, params = change
            runs.setdefault(sql, []).append(params)
    execute_runs(runs, starts, huey)


def execute_runs(runs: dict[str, list[tuple]], starts: list[Start], huey: 'SprigHuey') -> None:
    sql = statements()
    cursor = database.cursor()
    if sql.insert in runs:
        insert_rows(cursor, runs.pop(sql.insert))
    started, whole, finishes = paired(starts, runs.pop(sql.finished, []))
    if starts and update_rows(cursor, (sql.started, started), (sql.whole, whole)) != len(starts):
        # Some rows are still in their producer's batch: insert them here, then update again.
        insert_rows(cursor, [new_row(huey, start.task, 'started') for start in starts])
        update_rows(cursor, (sql.started, started), (sql.whole, whole))
    for text, params in (*runs.items(), (sql.finished, finishes)):  # the other finishes
        if params:
            cursor.executemany(text, params)


def paired(starts: list[Start], finishes: list[tuple]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(starts alone, starts with their finish, finishes alone) as statement parameters: a task
    that started and finished within one batch (most do) gets one statement, not two."""
    pending = {start.task.id: start for start in starts}
    whole, alone = [], []
    for state, finished_at, error, result, task_id in finishes:
        start = pending.pop(task_id, None)
        if start is None:
            alone.append((state, finished_at, error, result, task_id))
        else:
            _, started_at, consumer, _ = start.params
            whole.append((state, started_at, consumer, finished_at, error, result, task_id))
    return [start.params for start in pending.values()], whole, alone


def update_rows(cursor, *runs: tuple[str, list[tuple]]) -> int:
    """Run each (statement, rows) and return how many rows they changed in all."""
    changed = 0
    for text, rows in runs:
        if rows:
            cursor.executemany(text, rows)
            changed += cursor.rowcount
    return changed


def insert_rows(cursor, rows: list[tuple]) -> None:
    """New records, many to a statement: one round trip (one step of SQLite) for a whole chunk,
    where executemany takes one per row."""
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        cursor.execute(statements().insert_many(len(chunk)), [value for row in chunk for value in row])


INSERT_CHUNK = 99  # rows per statement: 990 parameters, under the 999 of SQLite before 3.32

RECORD_COLUMNS = ('id', 'name', 'args', 'payload', 'state', 'user_id', 'created_at', 'eta', 'retries', 'requeued')


@dataclass(frozen=True)
class Statements:
    insert: str  # a new record; nothing when the id exists
    started: str
    finished: str
    whole: str  # started and finished at once
    head: str
    tail: str
    marks: str

    def insert_many(self, rows: int) -> str:
        return f'{self.head}{", ".join([self.marks] * rows)}{self.tail}'


def statements() -> Statements:
    """The frequent record statements in the bound database's words. Written out because Peewee
    takes longer to build a statement than SQLite to run it."""
    return statements_for(type(database.obj).__name__.lower(), database.param)


@functools.cache
def statements_for(kind: str, p: str) -> Statements:
    head = 'INSERT OR IGNORE INTO' if 'sqlite' in kind else 'INSERT IGNORE INTO' if 'mysql' in kind else 'INSERT INTO'
    tail = ' ON CONFLICT DO NOTHING' if 'postgres' in kind else ''
    marks = f'({", ".join([p] * len(RECORD_COLUMNS))})'
    into = f'{head} taskrecord ({", ".join(RECORD_COLUMNS)}) VALUES '
    return Statements(
        insert=f'{into}{marks}{tail}',
        started=f'UPDATE taskrecord SET state = {p}, started_at = {p}, consumer = {p} WHERE id = {p}',
        finished=f'UPDATE taskrecord SET state = {p}, finished_at = {p}, error = {p}, result = {p} WHERE id = {p}',
        whole=(f'UPDATE taskrecord SET state = {p}, started_at = {p}, consumer = {p}, finished_at = {p}, '
               f'error = {p}, result = {p} WHERE id = {p}'),
        head=into, tail=tail, marks=marks,
    )


# Records -----------------------------------------------------------------------------------------

def summary(huey: SprigHuey, task: Task) -> tuple[str, str | None, int | None]:
    """(arguments for people, secrets masked; the real ones as JSON or None; the user_id argument)."""
    info = huey.infos.get(task.name)
    names = info.params if info else ()
    bound = dict(zip(names, task.args, strict=False)) | dict(task.kwargs)
    shown = {k: '***' if info and k in info.secret else v for k, v in bound.items()}
    try:
        # A task with secrets keeps no payload: they would sit in the table for weeks.
        payload = None if info and info.secret else json.dumps([list(task.args), task.kwargs])
    except (TypeError, ValueError):
        payload = None
    user_id = bound.get('user_id')
    return json.dumps(shown, default=str)[:500], payload, user_id if isinstance(user_id, int) else None


def new_row(huey: SprigHuey, task: Task, state: str | None = None) -> tuple:
    """The values of RECORD_COLUMNS for a task seen for the first time."""
    eta, now = to_utc(task.eta), utcnow()
    state = state or ('scheduled' if eta and eta > now else 'queued')
    args, payload, user_id = summary(huey, task)
    return (task.id, task.name, args, payload, state, user_id, now, eta, 0, False)


def stub_value(row: tuple) -> str:
    values = {column: value.isoformat() if isinstance(value, datetime.datetime) else value
              for column, value in zip(RECORD_COLUMNS, row, strict=True)}
    return json.dumps(values)


def move_back(huey: SprigHuey, task: Task) -> None:
    """A known task enqueued again (falling due, retried, re-run): its record says queued again,
    unless it is retrying, which it stays until it starts."""
    state = 'scheduled' if task.eta and to_utc(task.eta) > utcnow() else 'queued'
    back = Case(None, [(TaskRecord.state.in_(('scheduled', 'started')), state)], TaskRecord.state)
    later(huey, task, state=back, eta=to_utc(task.eta))


def stub(huey: SprigHuey, task_id: str) -> TaskRecord | None:
    """The record of a task enqueued in the last moments, before its row lands."""
    value = huey.storage.read_stub(task_id)
    if value is None:
        return None
    values = json.loads(value)
    for column in ('created_at', 'eta'):
        if values[column]:
            values[column] = datetime.datetime.fromisoformat(values[column])
    return TaskRecord(**values)


def on_executing(huey: SprigHuey, task: Task, exc: BaseException | None = None) -> None:
    huey.writer.add(Start(task, ('started', utcnow(), huey.consumer_id, task.id)))


def update(task: Task | TaskRecord, **values) -> None:
    """Change a record now (the rare, out-of-band changes: sweeps, revokes)."""
    TaskRecord.update(**values).where(TaskRecord.id == task.id).execute()


def later(huey: SprigHuey, task: Task, **values) -> None:
    """Change a record in the writer's next batch (the changes Huey's signals bring)."""
    query = TaskRecord.update(**values).where(TaskRecord.id == task.id)
    huey.writer.add(query.execute)


def finished(huey: SprigHuey, task: Task, state: str, error: str | None = None, result: str | None = None) -> None:
    huey.writer.add(hot_update(statements().finished, state, utcnow(), error, result, task.id))


def error_text(exc: BaseException | None) -> str | None:
    return None if exc is None else f'{type(exc).__name__}: {exc}'[:2000]


def on_error(huey: SprigHuey, task: Task, exc: BaseException | None = None) -> None:
    # With retries left Huey will send RETRYING next; with none, this failure is final.
    if task.retries:
        later(huey, task, error=error_text(exc))
    else:
        finished(huey, task, 'failed', error=error_text(exc))


def on_interrupted(huey: SprigHuey, task: Task, exc: BaseException | None = None) -> None:
    info = huey.infos.get(task.name)
    if info and info.idempotent:
        huey.writer.flush()  # its 'started' first, then back to queued
        task.seen = True
        huey.enqueue(task)
    else:
        finished(huey, task, 'lost', error='interrupted by a consumer shutdown')


TRANSITIONS: dict[str, Callable] = {
    signals.SIGNAL_SCHEDULED: lambda h, t, e=None: later(h, t, state=Case(
        None, [(TaskRecord.state == 'retrying', 'retrying')], 'scheduled'), eta=to_utc(t.eta)),
    signals.SIGNAL_EXECUTING: on_executing,
    signals.SIGNAL_COMPLETE: lambda h, t, e=None: finished(
        h, t, 'succeeded', result=getattr(t, 'result_summary', None)),
    signals.SIGNAL_ERROR: on_error,
    signals.SIGNAL_LOCKED: on_error,
    signals.SIGNAL_TIMEOUT: on_error,
    signals.SIGNAL_RETRYING: lambda h, t, e=None: later(h, t, state='retrying', retries=TaskRecord.retries + 1),
    signals.SIGNAL_REVOKED: lambda h, t, e=None: finished(h, t, 'revoked'),
    signals.SIGNAL_CANCELED: lambda h, t, e=None: finished(h, t, 'revoked'),
    signals.SIGNAL_EXPIRED: lambda h, t, e=None: finished(h, t, 'expired'),
    signals.SIGNAL_INTERRUPTED: on_interrupted,
}


# The consumer --------------------------------------------------------------------------------------

class LeaderScheduler(Scheduler):
    """Huey's scheduler with a finer tick, enqueueing crontab tasks only on the leader, in
    [app] timezone."""

    def __init__(self, huey, stop_flag, interval, periodic):
        super().__init__(huey, stop_flag, interval, periodic)
        self.interval = TICK  # Huey clamps to whole seconds; delayed tasks start within TICK

    def enqueue_periodic_tasks(self, now):
        if self.huey.leader:
            # Huey matches crontabs against the time it is given: [app] timezone's wall clock.
            # Its consumer passes no time (None): now, in UTC, as our Huey keeps it.
            local = (now or utcnow()).replace(tzinfo=datetime.UTC).astimezone(self.huey.timezone).replace(tzinfo=None)
            super().enqueue_periodic_tasks(local)


class SprigConsumer(Consumer):
    """A Huey consumer that beats, competes for the scheduler lease, and stops gracefully on
    SIGINT and SIGTERM alike."""

    scheduler_class = LeaderScheduler

    def __init__(self, huey: SprigHuey, **options):
        if options.get('shutdown_timeout') is None:
            options['shutdown_timeout'] = huey.shutdown_timeout
        super().__init__(huey, **options)
        huey.consumer_id = f'{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}'
        huey.leader = False
        self._signal_actions = {signum: (False, True) for signum in self._signal_actions}
        self.coordinator = Coordinator(huey, self.workers, self.stop_flag)

    def start(self) -> None:
        create_tables()  # a consumer may start before any web process has created them
        super().start()
        self.coordinator.start()

    def stop(self, graceful: bool = False) -> None:
        super().stop(graceful)
        self.coordinator.join(5)
        self.huey.writer.flush()


class Coordinator(threading.Thread):
    """Per consumer: heartbeats; on the leader, interval tasks and the lost-task sweep."""

    def __init__(self, huey: SprigHuey, workers: int, stop_flag):
        super().__init__(name='Coordinator', daemon=True)
        self.huey, self.workers, self.stop_flag = huey, workers, stop_flag
        self.started_at = utcnow()
        self.next_beat = self.next_sweep = 0.0
        self.suspects: set[str] = set()  # queued tasks found neither queued nor scheduled last sweep

    def run(self) -> None:
        clock = 0.0
        while not self.stop_flag.wait(TICK):
            clock += TICK
            try:
                self.tick(clock)
            except Exception:
                log.exception('coordinator tick failed; retrying')
                database.manual_close()  # perhaps broken: not back to the pool
        self.leave()

    def tick(self, clock: float) -> None:
        if clock >= self.next_beat:
            self.next_beat = clock + BEAT_EVERY
            self.beat()
            self.huey.leader = take_lease(self.huey.consumer_id)
        if self.huey.leader:
            run_due_intervals(self.huey)
            if clock >= self.next_sweep:
                self.next_sweep = clock + BEAT_EVERY
                sweep_lost(self.huey)
                if self.suspects or died_lately(self.huey) or queue_failed_lately(self.huey):
                    self.suspects = sweep_vanished(self.huey, self.suspects)

    def beat(self) -> None:
        # Update, else insert: the one upsert the three databases all speak.
        fields = dict(host=socket.gethostname(), pid=os.getpid(), workers=self.workers,
                      started_at=self.started_at, beat_at=utcnow())
        if not ConsumerBeat.update(**fields).where(ConsumerBeat.id == self.huey.consumer_id).execute():
            ConsumerBeat.insert(id=self.huey.consumer_id, **fields).on_conflict_ignore().execute()

    def leave(self) -> None:
        """Say goodbye at once: the next leader need not wait for the lease to run out."""
        try:
            ConsumerBeat.delete().where(ConsumerBeat.id == self.huey.consumer_id).execute()
            Lease.update(expires=seconds_ago(1)).where(Lease.holder == self.huey.consumer_id).execute()
        except Exception:
            log.exception('could not leave cleanly')
        finally:
            self.huey.leader = False
            database.close()


def take_lease(holder: str, name: str = 'scheduler') -> bool:
    """Take or renew the lease; True while `holder` has it. One statement: a race has one winner."""
    now = utcnow()
    Lease.insert(name=name, holder=None, expires=now).on_conflict_ignore().execute()
    won = (Lease.update(holder=holder, expires=now + datetime.timedelta(seconds=LEASE_TTL))
           .where((Lease.name == name) & ((Lease.holder == holder) | (Lease.expires < now)))
           .execute())
    return won == 1


def run_due_intervals(huey: SprigHuey) -> None:
    now = utcnow()
    for interval in huey.intervals.values():
        Schedule.insert(name=interval.name, every=interval.every, next_run=now).on_conflict_ignore().execute()
        if claim_run(interval, now):
            interval.wrapper()


def claim_run(interval: Interval, now: datetime.datetime) -> bool:
    """Move the interval's clock on by one period if it is due; True for the one caller that did."""
    step = datetime.timedelta(seconds=interval.every)
    row = Schedule.get_or_none(Schedule.name == interval.name)
    if row is None or row.next_run > now:
        return False
    # Keep the beat (next = previous + step) unless it fell behind by more than a period.
    following = row.next_run + step if row.next_run + step > now else now + step
    return (Schedule.update(last_run=now, next_run=following, every=interval.every)
            .where((Schedule.name == interval.name) & (Schedule.next_run == row.next_run))
            .execute()) == 1


def sweep_lost(huey: SprigHuey) -> None:
    """Tasks 'started' on a consumer without a recent heartbeat: re-run once if idempotent, else lost."""
    huey.writer.flush()  # this consumer's own news first
    alive = ConsumerBeat.select(ConsumerBeat.id).where(ConsumerBeat.beat_at > seconds_ago(huey.heartbeat_timeout))
    stuck = TaskRecord.select().where((TaskRecord.state == 'started') & (TaskRecord.consumer.not_in(alive)))
    for record in list(stuck):  # read all first: no SELECT left open under the writes (see seckill)
        rescue(huey, record, 'started', f'consumer {record.consumer} died')


def died_lately(huey: SprigHuey) -> bool:
    """Whether a consumer stopped beating without saying goodbye within the last hour."""
    return ConsumerBeat.select().where((ConsumerBeat.beat_at < seconds_ago(huey.heartbeat_timeout))
                                       & (ConsumerBeat.beat_at > seconds_ago(3600))).exists()


def queue_failed_lately(huey: SprigHuey) -> bool:
    """Whether this consumer failed to read the queue within the last ten minutes: a task taken
    off it as it failed may be gone (the reply lost), and so may all of a Redis that restarted empty."""
    return time.monotonic() - huey.queue_failed_at < 600


def sweep_vanished(huey: SprigHuey, suspects: set[str]) -> set[str]:
    """Tasks still 'queued' on their record, long enough for a consumer to have taken them, that
    are neither in the queue nor in the schedule: a consumer took one and died before its
    'started' was written. Rescued when missing on two sweeps in a row, since a live worker may be
    between taking a task and writing its start; returns the ids missing this time."""
    old = TaskRecord.select().where((TaskRecord.state == 'queued')
                                    & (TaskRecord.created_at < seconds_ago(huey.heartbeat_timeout))).limit(1000)
    records = {record.id: record for record in old}
    if not records:
        return set()
    # Only the message's envelope is read: a task this process does not know still counts.
    waiting = {huey.serializer.deserialize(data).id
               for data in huey.storage.enqueued_items() + huey.storage.scheduled_items()}
    missing = set(records) - waiting
    for task_id in missing & suspects:
        rescue(huey, records[task_id], 'queued', 'taken from the queue by a consumer that died')
    return missing - suspects


def rescue(huey: SprigHuey, record: TaskRecord, state: str, reason: str) -> None:
    """A task whose consumer died: enqueued once more (same id) if idempotent, else marked lost."""
    info = huey.infos.get(record.name)
    if info and info.idempotent and not record.requeued and record.payload:
        args, kwargs = json.loads(record.payload)
        update(record, requeued=True)
        again = info.wrapper.s(*args, **kwargs, id=record.id)
        again.seen = True
        huey.enqueue(again)
        log.warning('re-enqueued %s %s: %s', record.name, record.id, reason)
    else:
        marked = TaskRecord.update(state='lost', finished_at=utcnow(), error=reason
                                   ).where((TaskRecord.id == record.id) & (TaskRecord.state == state)).execute()
        log.warning('%s %s lost: %s', record.name, record.id, reason)
        if marked and record.payload:
            call_gone(huey, record.name, *json.loads(record.payload))
