"""What the task dashboard reads and does: pages of records, the last hour's statistics, the
queue's overview (schedules, consumers, the leader), and retry and revoke."""
import json
from typing import TYPE_CHECKING

from peewee import fn

from models import ConsumerBeat, Lease, Schedule, TaskRecord, utcnow
from sprig.queue.records import TERMINAL, appended, seconds_ago
from sprig.web.envelope import ApiError

if TYPE_CHECKING:
    from sprig.queue.engine import SprigHuey
    from sprig.web.api.queue import TaskQuery

STATES = ('queued', 'scheduled', 'started', 'retrying', *TERMINAL)
RAN = ('succeeded', 'failed', 'lost')  # ended after running (revoked and expired never ran)
RETRYABLE = ('failed', 'lost', 'expired')
REVOCABLE = ('queued', 'scheduled', 'retrying')


def page_of(huey: 'SprigHuey', query: 'TaskQuery') -> dict:
    """One page of records, newest first, filtered by state and name, and searched by q: a task
    id, or a value among the arguments."""
    records = TaskRecord.select()
    if query.state:
        records = records.where(TaskRecord.state == query.state)
    if query.name:
        records = records.where(TaskRecord.name == query.name)
    if query.q:
        records = records.where((TaskRecord.id == query.q) | TaskRecord.args.contains(query.q))
    items = records.order_by(TaskRecord.created_at.desc()).paginate(query.page, query.size)
    return {'count': records.count(), 'page': query.page, 'size': query.size,
            'items': [listed(huey, record) for record in items]}


def listed(huey: 'SprigHuey', record: TaskRecord) -> dict:
    """A record as the dashboard lists it: with whether it can run again, and why not."""
    refusal = retry_refusal(huey, record)
    return record.public() | {'retry': refusal is None and record.state in RETRYABLE, 'no_retry': refusal}


def retry_refusal(huey: 'SprigHuey', record: TaskRecord) -> str | None:
    """Why a task could not run again with its arguments, or None when it could (once ended)."""
    info = huey.infos.get(record.name)
    if info is None:
        return 'no consumer here knows this task any more: its code is gone'
    if info.secret:
        return f'its arguments are deliberately not kept ({", ".join(sorted(info.secret))} secret)'
    if record.payload is None:
        return 'its arguments could not be kept exactly (they are not plain JSON)'
    return None


def hour_stats() -> list[dict]:
    """Per task name over the last hour: runs that ended, failures among them, error rate and
    average duration."""
    since = seconds_ago(3600)
    counts: dict[str, dict] = {}
    rows = (TaskRecord.select(TaskRecord.name, TaskRecord.state, fn.COUNT(TaskRecord.id).alias('n'))
            .where((TaskRecord.finished_at > since) & TaskRecord.state.in_(RAN))
            .group_by(TaskRecord.name, TaskRecord.state))
    for row in rows:
        entry = counts.setdefault(row.name, {'name': row.name, 'finished': 0, 'failed': 0, 'durations': []})
        entry['finished'] += row.n
        entry['failed'] += row.n if row.state in ('failed', 'lost') else 0
    # Durations from the newest 1,000 runs: the same answer on every database, at a bounded cost.
    recent = (TaskRecord.select(TaskRecord.name, TaskRecord.started_at, TaskRecord.finished_at)
              .where((TaskRecord.finished_at > since) & TaskRecord.started_at.is_null(False))
              .order_by(TaskRecord.finished_at.desc()).limit(1000))
    for row in recent:
        if row.name in counts:
            counts[row.name]['durations'].append((row.finished_at - row.started_at).total_seconds())
    return [summarise(entry) for entry in sorted(counts.values(), key=lambda e: e['name'])]


def summarise(entry: dict) -> dict:
    durations = entry.pop('durations')
    entry['error_rate'] = round(entry['failed'] / entry['finished'], 3) if entry['finished'] else 0
    entry['avg_seconds'] = round(sum(durations) / len(durations), 3) if durations else None
    return entry


def periodic_panel(huey: 'SprigHuey') -> list[dict]:
    """Interval tasks with their shared clocks, and crontab tasks (next run unknown to Huey)."""
    clocks = {row.name: row for row in Schedule.select()}
    panel = []
    for name, interval in sorted(huey.intervals.items()):
        clock = clocks.get(name)
        panel.append({'name': name, 'schedule': f'every {huey.period(interval)} s',
                      'last_run': clock and clock.last_run, 'next_run': clock and clock.next_run})
    for task in huey._registry.periodic_tasks:
        panel.append({'name': task.name, 'schedule': 'crontab', 'last_run': None, 'next_run': None})
    return panel


def queue_overview(huey: 'SprigHuey') -> dict:
    now = utcnow()
    alive = ConsumerBeat.select().where(ConsumerBeat.beat_at > seconds_ago(huey.settings.queue.heartbeat_timeout))
    lease = Lease.get_or_none(Lease.name == 'scheduler')
    return {
        'pending': huey.pending_count(),
        'scheduled': huey.scheduled_count(),
        'periodic': periodic_panel(huey),
        'consumers': [{'id': c.id, 'host': c.host, 'pid': c.pid, 'workers': c.workers,
                       'heartbeat_age': round((now - c.beat_at).total_seconds(), 1)}
                      for c in alive.order_by(ConsumerBeat.started_at)],
        'leader': lease.holder if lease and lease.expires > now else None,
    }


def run_again(huey: 'SprigHuey', record: TaskRecord) -> str:
    """Enqueue a new task with the record's name and arguments; its id.

    :raise ApiError 409: not failed, lost or expired, or its arguments were not kept.
    """
    if record.state not in RETRYABLE:
        raise ApiError(409, f'a {record.state} task cannot be retried (only {", ".join(RETRYABLE)})')
    refusal = retry_refusal(huey, record)
    if refusal:
        raise ApiError(409, f'this task cannot run again: {refusal}')
    args, kwargs = json.loads(record.payload)
    return huey.infos[record.name].wrapper(*args, **kwargs).id


def revoke(huey: 'SprigHuey', record: TaskRecord) -> None:
    """:raise ApiError 409: it already started or ended (a running task cannot be stopped)."""
    huey.revoke_by_id(record.id)  # the consumer skips it when it comes up
    # Conditional: a consumer may start it between the read and this write.
    revoked = (TaskRecord.update(state='revoked', finished_at=utcnow(), events=appended(huey, 'revoked'))
               .where((TaskRecord.id == record.id) & TaskRecord.state.in_(REVOCABLE)).execute())
    if not revoked:
        huey.restore_by_id(record.id)
        now = TaskRecord.get_by_id(record.id).state
        raise ApiError(409, f'a {now} task cannot be revoked')
