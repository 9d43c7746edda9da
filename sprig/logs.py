"""Logging: text lines for people or JSON lines for a log collector ([app] log_format), each
carrying what the line happened in: a request's id, route, status, duration and user, or the task
being run (its id, and the id of the request that enqueued it). A leaf: every layer may use it."""
import contextvars
import datetime
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

# What this thread of work is doing: set by the web app per request and by a worker per task.
CONTEXT: contextvars.ContextVar[Mapping] = contextvars.ContextVar('sprig_log_context', default=MappingProxyType({}))
TEXT_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


def context() -> Mapping:
    return CONTEXT.get()


@contextmanager
def working_on(**fields) -> Iterator[None]:
    """Log lines within the block carry fields (and any the enclosing block set)."""
    token = CONTEXT.set(CONTEXT.get() | fields)
    try:
        yield
    finally:
        CONTEXT.reset(token)


def begin(**fields) -> None:
    """A new piece of work in this thread (a request): its fields replace the last one's."""
    CONTEXT.set(MappingProxyType(fields))


def bind(**fields) -> None:
    """Add fields to this thread's current context (a request's status, once known)."""
    CONTEXT.set(CONTEXT.get() | fields)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context's fields, an exception's
    traceback. A field given with the call (`extra=`) wins over the context's."""

    FIELDS = ('request_id', 'route', 'method', 'status', 'duration_ms', 'user_id', 'task_id', 'task', 'consumer')

    def __init__(self, lookup: Callable[[str], str | None] | None = None):
        super().__init__()
        self.lookup = lookup  # a task's request id, read when one of its lines is first logged

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {'time': at.isoformat(timespec='milliseconds'), 'level': record.levelname, 'logger': record.name,
                'message': record.getMessage()}
        line |= {name: value for name, value in CONTEXT.get().items() if value is not None}
        line |= {name: getattr(record, name) for name in self.FIELDS if getattr(record, name, None) is not None}
        if 'task_id' in line and 'request_id' not in line and self.lookup:
            requested = self.lookup(line['task_id'])
            bind(request_id=requested or '')  # looked up once per task
            if requested:
                line['request_id'] = requested
        if record.exc_info:
            line['traceback'] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str, lookup: Callable[[str], str | None] | None = None) -> None:
    """Every handler of the root logger (one to stderr if it has none) writes log_format, text or
    json; huey_consumer's own handler included, which it adds before the consumer starts."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if log_format == 'json':
            handler.setFormatter(JsonFormatter(lookup))
        elif isinstance(handler.formatter, JsonFormatter) or handler.formatter is None:
            handler.setFormatter(logging.Formatter(TEXT_FORMAT))
