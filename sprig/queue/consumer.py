"""The consumer: Huey's, plus heartbeats, one elected leader (the "scheduler" lease) that alone runs
crontab and interval tasks and sweeps for lost tasks, and an embedded variant for the web process.

SIGINT and SIGTERM both stop a consumer gracefully; what is still running when the shutdown
timeout ends is re-enqueued (idempotent) or marked lost.
"""
import datetime
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING

from huey.consumer import Consumer, Scheduler

from models import ConsumerBeat, Lease, Schedule, TaskRecord, database, utcnow
from sprig import logs
from sprig.db.schema import create_tables
from sprig.queue import records
from sprig.queue.records import seconds_ago, update

if TYPE_CHECKING:
    from sprig.queue.engine import SprigHuey

log = logging.getLogger('sprig.consumer')
BEAT_EVERY = 2  # seconds between heartbeats
LEASE_TTL = 6  # a dead leader is replaced within this many seconds
TICK = 0.25  # the scheduler's clock, in seconds: delayed tasks start within it
CRONTAB = '(crontab)'  # the Schedule row of the minute whose crontab tasks were enqueued last


class LeaderScheduler(Scheduler):
    """Huey's scheduler with a finer tick, enqueueing crontab tasks only on the leader, once a
    minute whichever consumer leads, in [app] timezone."""

    def __init__(self, huey, stop_flag, interval, periodic):
        super().__init__(huey, stop_flag, interval, periodic)
        self.interval = TICK  # Huey clamps to whole seconds; delayed tasks start within TICK

    def enqueue_periodic_tasks(self, now):
        if not self.huey.leader:
            # Huey checks at start-up, then every 60 s; a consumer not leading yet checks again
            # at its next tick, so the check Huey makes at start-up comes as it starts to lead.
            self._next_periodic = time.monotonic()
            return
        now = now or utcnow()  # Huey's consumer passes no time: now, in UTC, as our Huey keeps it
        if self.huey._registry.periodic_tasks and claim_minute(now):
            # Huey matches crontabs against the time it is given: [app] timezone's wall clock.
            local = now.replace(tzinfo=datetime.UTC).astimezone(self.huey.timezone).replace(tzinfo=None)
            super().enqueue_periodic_tasks(local)


class SprigConsumer(Consumer):
    """A Huey consumer that beats, competes for the scheduler lease, and stops gracefully on
    SIGINT and SIGTERM alike."""

    scheduler_class = LeaderScheduler

    def __init__(self, huey: 'SprigHuey', **options):
        if options.get('shutdown_timeout') is None:
            options['shutdown_timeout'] = huey.settings.queue.shutdown_timeout
        super().__init__(huey, **options)
        logs.configure(huey.settings.app.log_format, records.request_of)  # huey_consumer's handler too
        huey.consumer_id = f'{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}'
        huey.leader = False
        # Signal -> (restart, graceful): every stop graceful, SIGHUP still Huey's graceful restart.
        self._signal_actions = {signum: (restart, True) for signum, (restart, _) in self._signal_actions.items()}
        self.coordinator = Coordinator(huey, self.workers, self.stop_flag)

    def start(self) -> None:
        create_tables()  # a consumer may start before any web process has created them
        super().start()
        self.coordinator.start()

    def stop(self, graceful: bool = False) -> None:
        super().stop(graceful)
        if self.coordinator.ident is not None:  # started: Huey allows stop() before start()
            self.coordinator.join(5)
        self.huey.writer.flush()


class Coordinator(threading.Thread):
    """Per consumer: heartbeats; on the leader, interval tasks and the lost-task sweep.

    It sleeps until the next thing due: the next beat (every BEAT_EVERY s) or, on the leader, the
    next interval run. The leader keeps the interval clocks in memory, read from Schedule when it
    becomes leader; it writes a clock only when that interval runs, so that the next leader goes
    on where this one stopped.
    """

    def __init__(self, huey: 'SprigHuey', workers: int, stop_flag):
        super().__init__(name='Coordinator', daemon=True)
        self.huey, self.workers, self.stop_flag = huey, workers, stop_flag
        self.started_at = utcnow()
        self.next_beat = 0.0  # time.monotonic() of the next heartbeat
        self.clocks: dict[str, datetime.datetime] = {}  # interval -> its next run, while leading
        self.sweeps_due: dict[str, float] = {}  # leader sweep -> time.monotonic() of its next run
        self.suspects: set[str] = set()  # queued tasks found neither queued nor scheduled last sweep

    def run(self) -> None:
        while not self.stop_flag.wait(self.sleep_time()):
            try:
                self.tick()
            except Exception:
                log.exception('coordinator tick failed; retrying')
                database.manual_close()  # perhaps broken: not back to the pool
                self.stop_flag.wait(TICK)  # no tight loop while the database fails
        self.leave()

    def sleep_time(self) -> float:
        """Seconds until the next beat or the next interval run, whichever comes first."""
        wait = self.next_beat - time.monotonic()
        if self.huey.leader and self.clocks:
            wait = min(wait, (min(self.clocks.values()) - utcnow()).total_seconds())
        return max(wait, TICK / 10)

    def tick(self) -> None:
        if time.monotonic() >= self.next_beat:
            self.next_beat = time.monotonic() + BEAT_EVERY
            self.beat()
            leading = take_lease(self.huey.consumer_id)
            if leading and not self.huey.leader:
                self.clocks, self.sweeps_due = read_clocks(self.huey), {}
            self.huey.leader = leading
            if leading:
                self.sweep()
                self.run_sweeps()
        if self.huey.leader:
            run_due_intervals(self.huey, self.clocks)

    def sweep(self) -> None:
        sweep_lost(self.huey)
        if self.suspects or died_lately(self.huey) or queue_failed_lately(self.huey):
            self.suspects = sweep_vanished(self.huey, self.suspects)

    def run_sweeps(self) -> None:
        """The leader sweeps that are due (SprigHuey.leader_sweep); one that fails is logged and
        runs again at its next time."""
        now = time.monotonic()
        for sweep in self.huey.sweeps.values():
            if self.sweeps_due.get(sweep.name, 0.0) <= now:
                self.sweeps_due[sweep.name] = now + sweep.every
                try:
                    sweep.func()
                except Exception:
                    log.exception('leader sweep %s failed', sweep.name)

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
    claim = (Lease.update(holder=holder, expires=now + datetime.timedelta(seconds=LEASE_TTL))
             .where((Lease.name == name) & ((Lease.holder == holder) | (Lease.expires < now))))
    if claim.execute() == 1:
        return True
    if Lease.select().where(Lease.name == name).exists():
        return False
    Lease.insert(name=name, holder=None, expires=now).on_conflict_ignore().execute()  # the very first
    return claim.execute() == 1


def claim_minute(now: datetime.datetime) -> bool:
    """True for the one check that enqueues this minute's crontab tasks: a leader that took over
    within the minute does not enqueue them again."""
    following = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    Schedule.insert(name=CRONTAB, every=60, next_run=now).on_conflict_ignore().execute()
    return (Schedule.update(last_run=now, next_run=following)
            .where((Schedule.name == CRONTAB) & (Schedule.next_run != following)).execute()) == 1


def whole_seconds(moment: datetime.datetime) -> datetime.datetime:
    # Clocks compare equal after a round trip through any database (MySQL keeps no microseconds).
    return moment.replace(microsecond=0)


def read_clocks(huey: 'SprigHuey') -> dict[str, datetime.datetime]:
    """Every interval's next run, as the shared clocks say (a new interval is due now)."""
    now = whole_seconds(utcnow())
    for name, interval in huey.intervals.items():
        Schedule.insert(name=name, every=huey.period(interval), next_run=now).on_conflict_ignore().execute()
    return {row.name: row.next_run for row in Schedule.select() if row.name in huey.intervals}


def run_due_intervals(huey: 'SprigHuey', clocks: dict[str, datetime.datetime]) -> None:
    now = utcnow()
    for name, due in list(clocks.items()):
        interval = huey.intervals.get(name)
        if interval is None or due > now:
            continue
        following = claim_run(name, huey.period(interval), due, now)
        if following is None:  # another leader moved the clock: believe the table
            clocks.update(read_clocks(huey))
        else:
            clocks[name] = following
            interval.wrapper()


def claim_run(name: str, every: int, due: datetime.datetime, now: datetime.datetime) -> datetime.datetime | None:
    """Move the clock from `due` on by one period; the new next run, or None when the clock no
    longer says `due`."""
    step = datetime.timedelta(seconds=every)
    # Keep the beat (next = previous + step) unless it fell behind by more than a period.
    following = due + step if due + step > now else whole_seconds(now) + step
    moved = (Schedule.update(last_run=now, next_run=following, every=every)
             .where((Schedule.name == name) & (Schedule.next_run == due)).execute())
    return following if moved == 1 else None


def sweep_lost(huey: 'SprigHuey') -> None:
    """Tasks 'started' on a consumer without a recent heartbeat: re-run once if idempotent, else lost."""
    huey.writer.flush()  # this consumer's own news first
    timeout = huey.settings.queue.heartbeat_timeout
    alive = ConsumerBeat.select(ConsumerBeat.id).where(ConsumerBeat.beat_at > seconds_ago(timeout))
    stuck = TaskRecord.select().where((TaskRecord.state == 'started') & (TaskRecord.consumer.not_in(alive)))
    for record in list(stuck):  # read all first: no SELECT left open under the writes (see seckill)
        rescue(huey, record, 'started', f'consumer {record.consumer} died')


def died_lately(huey: 'SprigHuey') -> bool:
    """Whether a consumer stopped beating without saying goodbye within the last hour."""
    return ConsumerBeat.select().where((ConsumerBeat.beat_at < seconds_ago(huey.settings.queue.heartbeat_timeout))
                                       & (ConsumerBeat.beat_at > seconds_ago(3600))).exists()


def queue_failed_lately(huey: 'SprigHuey') -> bool:
    """Whether this consumer failed to read the queue within the last ten minutes: a task taken
    off it as it failed may be gone (the reply lost), and so may all of a Redis that restarted empty."""
    return time.monotonic() - huey.queue_failed_at < 600


def sweep_vanished(huey: 'SprigHuey', suspects: set[str]) -> set[str]:
    """Tasks still 'queued' on their record, long enough for a consumer to have taken them, that
    are neither in the queue nor in the schedule: a consumer took one and died before its
    'started' was written. Rescued when missing on two sweeps in a row, since a live worker may be
    between taking a task and writing its start; returns the ids missing this time."""
    since = seconds_ago(huey.settings.queue.heartbeat_timeout)
    old = TaskRecord.select().where((TaskRecord.state == 'queued') & (TaskRecord.created_at < since)).limit(1000)
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


def rescue(huey: 'SprigHuey', record: TaskRecord, state: str, reason: str) -> None:
    """A task whose consumer died: enqueued once more (same id) if idempotent, else marked lost."""
    info = huey.infos.get(record.name)
    if info and info.idempotent and not record.requeued and record.payload:
        args, kwargs = json.loads(record.payload)
        update(record, requeued=True, events=records.appended(huey, 'requeued', reason))
        again = info.wrapper.s(*args, **kwargs, id=record.id)
        again.seen = True
        huey.enqueue(again)
        log.warning('re-enqueued %s %s: %s', record.name, record.id, reason)
    else:
        marked = (TaskRecord.update(state='lost', finished_at=utcnow(), error=reason,
                                    events=records.appended(huey, 'lost', reason))
                  .where((TaskRecord.id == record.id) & (TaskRecord.state == state)).execute())
        log.warning('%s %s lost: %s', record.name, record.id, reason)
        if marked and record.payload:
            huey.call_gone(record.name, *json.loads(record.payload))


class EmbeddedConsumer(SprigConsumer):
    """A consumer living in the web process: threads only, and the host keeps its signal handlers."""

    def _set_signal_handlers(self) -> None:
        # Huey's handlers only set a flag read by Consumer.run(), which an embedded consumer
        # never calls: with them, Ctrl-C would no longer stop the web server.
        pass


def start_embedded_consumer(huey: 'SprigHuey') -> EmbeddedConsumer:
    consumer = EmbeddedConsumer(huey, workers=huey.settings.queue.workers, worker_type='thread',
                                initial_delay=0.05, max_delay=0.5, check_worker_health=False)
    consumer.start()
    return consumer


def stop_embedded_consumer(consumer: EmbeddedConsumer) -> None:
    """Stop as huey_consumer does: wait up to shutdown_timeout, then settle what still runs."""
    consumer.stop(graceful=True)
    consumer.huey.notify_interrupted_tasks()
