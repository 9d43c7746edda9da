"""Task records: every task's life as a TaskRecord row, written in batches by one thread per process.

A task enqueued gets a stub written with the enqueue itself (storage.py), its row within
FLUSH_EVERY; Huey's signals move it through queued, scheduled, started, retrying, succeeded,
failed, revoked, expired and lost (TRANSITIONS).
"""
import atexit
import datetime
import functools
import json
import logging
import os
import pickletools
import reprlib
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from huey import signals
from huey.api import Task
from peewee import Case

from models import TaskRecord, database, utcnow
from sprig import logs
from sprig.db.prepared import first, prepared

if TYPE_CHECKING:
    from sprig.queue.engine import SprigHuey

log = logging.getLogger('sprig.records')
TERMINAL = ('succeeded', 'failed', 'revoked', 'expired', 'lost')
FLUSH_EVERY = 0.02  # seconds a record change may wait before its batch is committed
STUB_TTL = 120  # seconds a new task's stub answers for its record, which lands far sooner
SHORT = reprlib.Repr()  # shows the arguments JSON cannot (maxstring 30, maxother 30, a few levels)


def seconds_ago(seconds: float) -> datetime.datetime:
    return utcnow() - datetime.timedelta(seconds=seconds)


def to_utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """Huey's etas are naive UTC already (utc=True); aware ones are converted."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


class RecordWriter:
    """Commits this process's record changes in batches, one transaction per FLUSH_EVERY s.

    A worker hands its change over and goes on: one commit per batch instead of one per
    change, and no worker waits on SQLite's write lock. The writer thread sleeps on a condition
    while there is nothing to write. The price: a process killed (SIGKILL) loses the changes of
    its last FLUSH_EVERY seconds, so such a record stays a step behind. Changes are applied in
    the order given, whatever thread gave them.
    """

    def __init__(self, huey: 'SprigHuey'):
        self.huey = huey
        self.pending: list[Change | Start] = []
        self.ready = threading.Condition()  # guards `pending`; notified when it stops being empty
        self.flushing = threading.Lock()  # one batch at a time, so batches stay in order
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.pid = os.getpid()

    def add(self, change: 'Change | Start') -> None:
        with self.ready:
            self.pending.append(change)
            if self.thread is None or self.pid != os.getpid():  # none yet, or a forked child
                self.pid = os.getpid()
                self.thread = threading.Thread(target=self.run, name='RecordWriter', daemon=True)
                self.thread.start()
                # A process that exits writes what it holds (a web process's last enqueues, a
                # producer's): the daemon thread would die with them unwritten.
                atexit.unregister(self.flush)  # once, however often the thread starts
                atexit.register(self.flush)
            if len(self.pending) == 1:
                self.ready.notify()

    def run(self) -> None:
        while True:
            with self.ready:
                while not self.pending and not self.stopping:
                    self.ready.wait()
                if self.stopping:
                    return
            time.sleep(FLUSH_EVERY)  # the batch's window: what comes meanwhile shares its commit
            self.flush()

    def stop(self) -> None:
        """End the writer thread, then write what is pending here (a later change starts a new
        thread): for a Huey instance that is done with, in a process that goes on."""
        with self.ready:
            thread, self.stopping = self.thread, True
            self.ready.notify()
        if thread is not None:
            thread.join(5)
        with self.ready:
            self.thread, self.stopping = None, False
        self.flush()

    def flush(self) -> None:
        with self.flushing:
            with self.ready:
                batch, self.pending = self.pending, []
            if not batch:
                return
            try:
                with database.atomic():
                    apply(batch, self.huey)
            except Exception:
                log.exception('could not write %d task record changes; retrying', len(batch))
                database.manual_close()  # perhaps broken: not back to the pool
                with self.ready:
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
        # Some rows are still in their producer's batch: insert them here, then update those
        # alone (the others have their start already: appending its event twice would show it twice).
        insert_rows(cursor, [late_row(huey, start.task) for start in starts])
        update_rows(cursor, (only_new(sql.started), started), (only_new(sql.whole), whole))
    for text, params in (*runs.items(), (sql.finished, finishes)):  # the other finishes
        if params:
            cursor.executemany(text, params)


def paired(starts: list[Start], finishes: list[tuple]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """(starts alone, starts with their finish, finishes alone) as statement parameters: a task
    that started and finished within one batch (most do) gets one statement, not two."""
    pending = {start.task.id: start for start in starts}
    whole, alone = [], []
    for state, finished_at, error, result, event, task_id in finishes:
        start = pending.pop(task_id, None)
        if start is None:
            alone.append((state, finished_at, error, result, event, task_id))
        else:
            _, started_at, consumer, began, _ = start.params
            whole.append((state, started_at, consumer, finished_at, error, result, began + event, task_id))
    return [start.params for start in pending.values()], whole, alone


def late_row(huey: 'SprigHuey', task: Task) -> tuple:
    """The row of a task that started before its producer's batch inserted it: the producer's own
    values, from the stub its enqueue left (with the request that enqueued it and its 'queued'
    event), else what this process can tell."""
    found = stub(huey, task.id)
    if found is None:
        return new_row(huey, task, 'started')
    return tuple(getattr(found, column) for column in RECORD_COLUMNS)


def only_new(statement: str) -> str:
    """An update of a record that has no start yet (a row just inserted for its start)."""
    return statement.replace(' WHERE id = ', ' WHERE started_at IS NULL AND id = ')


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

RECORD_COLUMNS = ('id', 'name', 'args', 'payload', 'state', 'user_id', 'created_at', 'eta', 'retries', 'requeued',
                  'events', 'request_id')


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
    events = f'events = CONCAT(events, {p})' if 'mysql' in kind else f'events = events || {p}'  # MySQL's || is OR
    return Statements(
        insert=f'{into}{marks}{tail}',
        started=f'UPDATE taskrecord SET state = {p}, started_at = {p}, consumer = {p}, {events} WHERE id = {p}',
        finished=(f'UPDATE taskrecord SET state = {p}, finished_at = {p}, error = {p}, result = {p}, {events} '
                  f'WHERE id = {p}'),
        whole=(f'UPDATE taskrecord SET state = {p}, started_at = {p}, consumer = {p}, finished_at = {p}, '
               f'error = {p}, result = {p}, {events} WHERE id = {p}'),
        head=into, tail=tail, marks=marks,
    )


def summary(huey: 'SprigHuey', task: Task) -> tuple[str, str | None, int | None]:
    """(arguments for people, secrets masked; the real ones as JSON or None; the user_id argument)."""
    info = huey.infos.get(task.name)
    names = info.params if info else ()
    # Huey takes what it is given (schedule(3) makes 3 the arguments): so does the summary.
    args = list(task.args) if isinstance(task.args, (list, tuple)) else [task.args]
    kwargs = task.kwargs if isinstance(task.kwargs, dict) else {'kwargs': task.kwargs}
    bound = dict(zip(names, args, strict=False)) | kwargs
    shown = {k: '***' if info and k in info.secret else v for k, v in bound.items()}
    # A task with secrets keeps no payload: they would sit in the table for weeks; nor does one
    # whose arguments are no list and dict (run again, they would not be the same).
    runnable = not (info and info.secret) and isinstance(task.args, (list, tuple)) and kwargs is task.kwargs
    payload = exact_json([args, kwargs]) if runnable else None
    user_id = bound.get('user_id')
    return for_people(shown), payload, user_id if isinstance(user_id, int) else None


def for_people(arguments: dict) -> str:
    """The arguments as JSON where they can be, else as Python would show them: the summary is
    for people, and must never refuse a task that Huey accepts (a dict keyed by tuples, a list
    holding itself)."""
    try:
        return json.dumps(arguments, default=str)[:500]
    except (TypeError, ValueError, RecursionError):
        return SHORT.repr(arguments)[:500]


def exact_json(value: list) -> str | None:
    """value as JSON when JSON gives it back unchanged (so a re-run gets the very arguments:
    no tuple turned list, no date turned text), else None."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return None
    return text if json.loads(text) == value else None


def new_row(huey: 'SprigHuey', task: Task, state: str | None = None) -> tuple:
    """The values of RECORD_COLUMNS for a task seen for the first time."""
    eta, now = to_utc(task.eta), utcnow()
    state = state or ('scheduled' if eta and eta > now else 'queued')
    args, payload, user_id = summary(huey, task)
    request_id = logs.context().get('request_id')  # the request that enqueues it, if one does
    # A row a consumer makes for a start it saw first (no stub left) gets its events from the start.
    events = '' if state == 'started' else event(huey, state)
    return (task.id, task.name, args, payload, state, user_id, now, eta, 0, False, events, request_id)


def event(huey: 'SprigHuey', state: str, error: str | None = None) -> str:
    """A transition as its record keeps it: one JSON line [state, time, consumer, worker, error];
    the consumer is None where no consumer made it (an enqueue in a web process)."""
    at = utcnow().isoformat(timespec='milliseconds')
    return json.dumps([state, at, huey.consumer_id, threading.current_thread().name, error]) + '\n'


def timeline(record: TaskRecord) -> list[dict]:
    """A record's transitions, oldest first."""
    names = ('state', 'at', 'consumer', 'worker', 'error')
    return [dict(zip(names, json.loads(line), strict=True)) for line in (record.events or '').splitlines() if line]


def request_of(task_id: str) -> str | None:
    """The id of the request that enqueued a task, for its log lines; None when unknown (or
    the database cannot say: a log line must never fail)."""
    try:
        return TaskRecord.select(TaskRecord.request_id).where(TaskRecord.id == task_id).scalar()
    except Exception:
        return None


def stub_value(row: tuple) -> str:
    values = {column: value.isoformat() if isinstance(value, datetime.datetime) else value
              for column, value in zip(RECORD_COLUMNS, row, strict=True)}
    return json.dumps(values)


def move_back(huey: 'SprigHuey', task: Task) -> None:
    """A known task enqueued again (falling due, retried, re-run): its record says queued again,
    unless it is retrying, which it stays until it starts."""
    state = 'scheduled' if task.eta and to_utc(task.eta) > utcnow() else 'queued'
    back = Case(None, [(TaskRecord.state.in_(('scheduled', 'started')), state)], TaskRecord.state)
    later(huey, task, state=back, eta=to_utc(task.eta), events=appended(huey, state))


# A record read by id, built once: pages poll it every few seconds.
RECORD_BY_ID = prepared(lambda: TaskRecord.select().where(TaskRecord.id == ''))


def find(huey: 'SprigHuey', task_id: str) -> TaskRecord | None:
    """A task's record as its pollers read it: its row, or the stub of a task just enqueued."""
    return first(TaskRecord, RECORD_BY_ID(), task_id) or stub(huey, task_id)


def stub(huey: 'SprigHuey', task_id: str) -> TaskRecord | None:
    """The record of a task enqueued in the last moments, before its row lands."""
    read = getattr(huey.storage, 'read_stub', None)  # none in immediate mode's memory storage
    value = read and read(task_id)
    if value is None:
        return None
    values = json.loads(value)
    for column in ('created_at', 'eta'):
        if values[column]:
            values[column] = datetime.datetime.fromisoformat(values[column])
    return TaskRecord(**values)


def on_executing(huey: 'SprigHuey', task: Task, exc: BaseException | None = None) -> None:
    huey.writer.add(Start(task, ('started', utcnow(), huey.consumer_id, event(huey, 'started'), task.id)))


def update(task: Task | TaskRecord, **values) -> None:
    """Change a record now (the rare, out-of-band changes: sweeps, revokes)."""
    TaskRecord.update(**values).where(TaskRecord.id == task.id).execute()


def appended(huey: 'SprigHuey', state: str, error: str | None = None):
    """The events column with one more transition, for an update."""
    return TaskRecord.events.concat(event(huey, state, error))


def later(huey: 'SprigHuey', task: Task, **values) -> None:
    """Change a record in the writer's next batch (the changes Huey's signals bring)."""
    query = TaskRecord.update(**values).where(TaskRecord.id == task.id)
    huey.writer.add(query.execute)


def finished(huey: 'SprigHuey', task: Task, state: str, error: str | None = None, result: str | None = None) -> None:
    huey.writer.add(hot_update(statements().finished, state, utcnow(), error, result, event(huey, state, error),
                               task.id))


def error_text(exc: BaseException | None) -> str | None:
    return None if exc is None else f'{type(exc).__name__}: {exc}'[:2000]


TRACEBACK_LIMIT = 16_000  # characters of a failure's traceback kept: its end, where it failed


def traceback_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = ''.join(traceback.format_exception(exc))
    return text if len(text) <= TRACEBACK_LIMIT else '…' + text[-TRACEBACK_LIMIT:]


def on_error(huey: 'SprigHuey', task: Task, exc: BaseException | None = None) -> None:
    # Huey sends LOCKED, TIMEOUT and RATE_LIMITED without the exception, from the except block
    # that caught it. With retries left Huey will send RETRYING next; with none, this failure is final.
    exc = exc or sys.exc_info()[1]
    if task.retries:  # the error of this try, in its own event; the state says retrying next
        later(huey, task, error=error_text(exc), traceback=traceback_text(exc),
              events=appended(huey, 'error', error_text(exc)))
    else:
        finished(huey, task, 'failed', error=error_text(exc))
        if exc is not None:
            later(huey, task, traceback=traceback_text(exc))


def undeliverable(huey: 'SprigHuey', data: bytes, exc: Exception) -> None:
    """A message a consumer took but cannot run (a task it does not know, arguments it cannot
    unpickle): Huey drops it, so its record ends failed with the reason, not queued for ever."""
    task_id, name = message_head(data)
    if task_id is None:
        log.error('dropped a message that names no task id: %s', error_text(exc))
        return
    if 'TaskRegistry' in str(exc):
        reason = (f'no task {name} in consumer {huey.consumer_id}: the consumer must import the module '
                  'that defines it (huey_consumer yourmodule.huey)')
    else:
        reason = f'the consumer could not read it: {error_text(exc)}'
    huey.writer.add(hot_update(statements().finished, 'failed', utcnow(), reason[:2000], None,
                               event(huey, 'failed', reason[:2000]), task_id))


def message_head(data: bytes) -> tuple[str | None, str | None]:
    """The task id and name of a pickled Huey message, read without running any of it (the
    message may not unpickle here): its first strings are the class's module and name, then
    the id and the task's name."""
    try:
        strings = [arg for op, arg, _ in pickletools.genops(data) if op.name.endswith('UNICODE')]
    except Exception:
        return None, None
    if strings[:2] != ['huey.registry', 'Message'] or len(strings) < 4:
        return None, None
    return strings[2], strings[3]


def on_interrupted(huey: 'SprigHuey', task: Task, exc: BaseException | None = None) -> None:
    info = huey.infos.get(task.name)
    if info and info.idempotent:
        huey.writer.flush()  # its 'started' first, then back to queued
        task.seen = True
        huey.enqueue(task)
    else:
        finished(huey, task, 'lost', error='interrupted by a consumer shutdown')


TRANSITIONS: dict[str, Callable] = {
    signals.SIGNAL_SCHEDULED: lambda h, t, e=None: later(h, t, state=Case(
        None, [(TaskRecord.state == 'retrying', 'retrying')], 'scheduled'), eta=to_utc(t.eta),
        events=appended(h, 'scheduled')),
    signals.SIGNAL_EXECUTING: on_executing,
    signals.SIGNAL_COMPLETE: lambda h, t, e=None: finished(
        h, t, 'succeeded', result=getattr(t, 'result_summary', None)),
    signals.SIGNAL_ERROR: on_error,
    signals.SIGNAL_LOCKED: on_error,
    signals.SIGNAL_TIMEOUT: on_error,
    signals.SIGNAL_RATE_LIMITED: on_error,
    signals.SIGNAL_RETRYING: lambda h, t, e=None: later(h, t, state='retrying', retries=TaskRecord.retries + 1,
                                                        events=appended(h, 'retrying')),
    signals.SIGNAL_REVOKED: lambda h, t, e=None: finished(h, t, 'revoked'),
    signals.SIGNAL_CANCELED: lambda h, t, e=None: finished(h, t, 'revoked'),
    signals.SIGNAL_EXPIRED: lambda h, t, e=None: finished(h, t, 'expired'),
    signals.SIGNAL_INTERRUPTED: on_interrupted,
}
