"""The task routes of API.md: a task's record, the admin list, the queue overview, retry and revoke."""
from typing import Annotated, Literal

from pydantic import Field

import tasks
from models import TaskRecord, User
from sprig.queue import dashboard, records
from sprig.queue.dashboard import STATES
from sprig.web.envelope import ok
from sprig.web.inputs import Input
from sprig.web.routing import Routes, get_or_404, or_404

ROUTES = Routes()


class TaskQuery(Input):
    state: Literal[STATES] | None = None
    name: Annotated[str, Field(max_length=100)] | None = None
    q: Annotated[str, Field(min_length=1, max_length=100)] | None = None  # a task id or an argument's value
    page: Annotated[int, Field(ge=1, le=100_000)] = 1
    size: Annotated[int, Field(ge=1, le=100)] = 20


def record_or_404(task_id: str) -> TaskRecord:
    return get_or_404(TaskRecord.select(), TaskRecord.id == task_id, missing=f'no task {task_id}')


@ROUTES.get('/api/v1/tasks/<task_id>', "A task's record (its user or an admin)", auth='user', statuses=(404,))
def get_task(task_id: str, user: User) -> dict:
    record = records.find(tasks.huey, task_id)
    # Another user's task is as unknown as a missing one.
    mine = record is not None and (user.is_admin or record.user_id == user.id)
    return ok(result=or_404(record if mine else None, f'no task {task_id}').public())


@ROUTES.get('/api/v1/admin/tasks', 'Task records, newest first; q: a task id or an argument value', auth='admin',
            query=TaskQuery)
def list_tasks(query: TaskQuery) -> dict:
    return ok(result=dashboard.page_of(tasks.huey, query))


@ROUTES.get('/api/v1/admin/tasks/stats', 'Per task name, the last hour', auth='admin')
def task_stats() -> dict:
    return ok(result=dashboard.hour_stats())


@ROUTES.get('/api/v1/admin/queue', 'Queue, schedules, consumers and the leader', auth='admin')
def queue() -> dict:
    return ok(result=dashboard.queue_overview(tasks.huey))


@ROUTES.post('/api/v1/admin/tasks/<task_id>/retry', 'Run a failed, lost or expired task again', auth='admin',
             statuses=(202, 404, 409))
def retry_task(task_id: str) -> dict:
    return ok('queued again', status=202, task_id=dashboard.run_again(tasks.huey, record_or_404(task_id)))


@ROUTES.post('/api/v1/admin/tasks/<task_id>/revoke', 'Skip a queued, scheduled or retrying task', auth='admin',
             statuses=(404, 409))
def revoke_task(task_id: str) -> dict:
    dashboard.revoke(tasks.huey, record_or_404(task_id))
    return ok('revoked')
