"""A task no consumer of the suite imports: enqueued, it can never run."""
from tasks import huey

__all__ = ['huey']


@huey.task()
def elsewhere() -> str:
    return 'never here'
