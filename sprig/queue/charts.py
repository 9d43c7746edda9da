"""The dashboard's series over time, drawn from the task records: outcomes per minute, the queue's
depth, durations per task name, and a flash sale's presses per second. Counts are grouped in the
database (one query a series); only bounded samples come back to Python."""
import datetime
import json
import math

from peewee import SQL, Expression, NodeList, fn

from models import TaskRecord, database, utcnow
from sprig.queue.records import seconds_ago

OUTCOMES = {'succeeded': 'succeeded', 'failed': 'failed', 'lost': 'failed', 'revoked': 'skipped',
            'expired': 'skipped'}
SAMPLE = 20_000  # durations read at most, the newest


def bucket_of(column, step: int) -> Expression:
    """Which `step`-second bucket since 1970 a naive UTC time column falls in, in the bound
    database's words (MySQL's UNIX_TIMESTAMP reads the session's time zone: keep it UTC)."""
    kind = type(database.obj).__name__.lower()
    if 'postgres' in kind:
        return NodeList((SQL('CAST(EXTRACT(EPOCH FROM'), column, SQL(') AS BIGINT) /'), step), glue=' ')
    if 'mysql' in kind:
        return fn.FLOOR(fn.UNIX_TIMESTAMP(column) / step)
    return fn.strftime('%s', column).cast('INTEGER') / step  # whole numbers: a whole quotient


def buckets(window: int, step: int) -> tuple[int, list[datetime.datetime]]:
    """The first bucket's number and each bucket's start, for the last `window` seconds."""
    now = math.floor(utcnow().replace(tzinfo=datetime.UTC).timestamp())
    first = (now - window) // step + 1
    starts = [datetime.datetime.fromtimestamp((first + n) * step, datetime.UTC).replace(tzinfo=None)
              for n in range(window // step)]
    return first, starts


def counted(column, step: int, since: datetime.datetime, *where, by=None) -> dict:
    """{(bucket, by value): count} of records whose column falls in a bucket since `since`."""
    number = bucket_of(column, step).alias('bucket')
    fields = [number, fn.COUNT(TaskRecord.id).alias('n')] + ([by] if by is not None else [])
    query = TaskRecord.select(*fields).where(column >= since, *where).group_by(SQL('bucket'), *(
        [by] if by is not None else []))
    return {(int(row['bucket']), row.get(by.name) if by is not None else None): row['n'] for row in query.dicts()}


def outcomes(window: int = 3600, step: int = 60) -> dict:
    """Tasks that ended per bucket, by outcome: succeeded, failed (lost too), skipped."""
    first, starts = buckets(window, step)
    found = counted(TaskRecord.finished_at, step, starts[0], by=TaskRecord.state)
    series = {name: [0] * len(starts) for name in ('succeeded', 'failed', 'skipped')}
    for (bucket, state), n in found.items():
        if 0 <= bucket - first < len(starts) and state in OUTCOMES:
            series[OUTCOMES[state]][bucket - first] += n
    return {'starts': starts, 'step': step, 'series': series}


def depth(window: int = 3600, step: int = 60) -> dict:
    """Tasks waiting in the queue at the end of each bucket: due (created, or their eta came) and
    not yet taken (started, or ended without starting)."""
    first, starts = buckets(window, step)
    due, left = fn.COALESCE(TaskRecord.eta, TaskRecord.created_at), fn.COALESCE(
        TaskRecord.started_at, TaskRecord.finished_at)
    waiting = (TaskRecord.select().where((due < starts[0]) & (left.is_null() | (left >= starts[0]))).count())
    arrived = counted(due, step, starts[0])
    gone = counted(left, step, starts[0])
    points = []
    for n in range(len(starts)):
        waiting += arrived.get((first + n, None), 0) - gone.get((first + n, None), 0)
        points.append(max(0, waiting))
    return {'starts': starts, 'step': step, 'series': {'waiting': points}}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def durations(window: int = 3600) -> list[dict]:
    """p50 and p95 run time per task name, of the newest SAMPLE runs that ended in the window."""
    rows = (TaskRecord.select(TaskRecord.name, TaskRecord.started_at, TaskRecord.finished_at)
            .where((TaskRecord.finished_at >= seconds_ago(window)) & TaskRecord.started_at.is_null(False))
            .order_by(TaskRecord.finished_at.desc()).limit(SAMPLE).tuples())
    times: dict[str, list[float]] = {}
    for name, started, finished in rows:
        times.setdefault(name, []).append(max(0.0, (finished - started).total_seconds()))
    return [{'name': name, 'runs': len(values), 'p50': percentile(values, 0.5), 'p95': percentile(values, 0.95)}
            for name, values in sorted(times.items())]


def press_outcome(record: TaskRecord) -> str:
    if record.state == 'succeeded':
        outcome = json.loads(record.result or '{}')
        return 'won' if isinstance(outcome, dict) and outcome.get('outcome') == 'won' else 'lost'
    return 'failed' if record.state in ('failed', 'lost') else 'waiting'


def presses(item_id: int, window: int = 120) -> dict | None:
    """A sale's presses that reached the queue, per second over the last `window` seconds in which
    it had any, by outcome; None when it had none (presses refused at once never reach it)."""
    mine = (TaskRecord.name == 'create_order') & TaskRecord.payload.endswith(f', {item_id}], {{}}]')
    last = TaskRecord.select(fn.MAX(TaskRecord.created_at)).where(mine).scalar()
    if last is None:
        return None
    end = math.floor(last.replace(tzinfo=datetime.UTC).timestamp()) + 1
    starts = [datetime.datetime.fromtimestamp(end - window + n, datetime.UTC).replace(tzinfo=None)
              for n in range(window)]
    series = {name: [0] * window for name in ('won', 'lost', 'failed', 'waiting')}
    rows = (TaskRecord.select(TaskRecord.created_at, TaskRecord.state, TaskRecord.result)
            .where(mine & (TaskRecord.created_at >= starts[0])).limit(50 * SAMPLE))
    for record in rows:
        second = int((record.created_at - starts[0]).total_seconds())
        if 0 <= second < window:
            series[press_outcome(record)][second] += 1
    return {'starts': starts, 'step': 1, 'series': series}
