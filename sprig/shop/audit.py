"""The audit log: every staff write, with who made it, when, and each changed field's value before
and after. Written in the write's own transaction, so a write is never without its entry."""
import datetime
import json
from decimal import Decimal
from typing import Any

from peewee import Model

from models import AuditEntry, User, utcnow

HIDDEN = {'password_hash'}  # changed, never shown


def plain(value: Any) -> Any:
    """A value as JSON keeps it: ids for rows, text for times and amounts."""
    if isinstance(value, Model):
        return value.get_id()
    if isinstance(value, (datetime.date, Decimal)):
        return str(value)
    return value


def diff(row: Model, values: dict) -> dict[str, list]:
    """{field: [before, after]} for the fields of values that change row (call before setting
    them); before is None for a row not yet saved."""
    changed = {}
    for name, after in values.items():
        before = row.__data__.get(name) if row.get_id() is not None else None
        if plain(before) != plain(after):
            changed[name] = ['***', '***'] if name in HIDDEN else [plain(before), plain(after)]
    return changed


def kind(row: Model) -> str:
    return row._meta.table_name


def record(actor: User | None, action: str, row: Model, changes: dict | None = None) -> None:
    """One entry for a write to row; a write with no actor (the demo data, a task) is not staff's."""
    if actor is not None:
        AuditEntry.create(actor=actor.id, actor_name=actor.username, action=action, kind=kind(row),
                          row_id=row.get_id(), changes=json.dumps(changes or {}, ensure_ascii=False))


def history(row: Model, limit: int = 50) -> list[dict]:
    """The row's entries, newest first."""
    entries = (AuditEntry.select().where((AuditEntry.kind == kind(row)) & (AuditEntry.row_id == row.get_id()))
               .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit))
    return [view(entry) for entry in entries]


def view(entry: AuditEntry) -> dict:
    return {'id': entry.id, 'actor': entry.actor_name, 'actor_id': entry.actor_id, 'at': entry.at,
            'action': entry.action, 'kind': entry.kind, 'row_id': entry.row_id, 'changes': json.loads(entry.changes)}


def prune(days: int) -> int:
    """Drop entries older than days; the count dropped."""
    return AuditEntry.delete().where(AuditEntry.at < utcnow() - datetime.timedelta(days=days)).execute()
