"""What admins do to accounts (list, disable and enable, roles, passwords, reset codes) and the
audit log of every staff write."""
from typing import Literal

from peewee import ModelSelect
from pydantic import StrictBool

import tasks
from models import AuditEntry, Order, User
from sprig.cache.store import cache
from sprig.settings import Settings
from sprig.shop import accounts, audit
from sprig.shop.accounts import Password
from sprig.shop.sms import Codes, TooSoon, masked_mobile
from sprig.web.envelope import ApiError, ok
from sprig.web.inputs import Change
from sprig.web.listing import ListQuery, api_page, paged, searched, sorted_by
from sprig.web.routing import Routes, get_or_404

ROUTES = Routes()
USER_SORTS = {'id': User.id, 'username': User.username, 'created': User.created, 'last_login': User.last_login}


class AccountChange(Change):
    role: Literal[User.ROLES] = None
    is_active: StrictBool = None
    password: Password = None


def staff_view(user: User) -> dict:
    return user.public() | {'is_active': user.is_active}


def users_of(query: ListQuery) -> tuple[ModelSelect, str]:
    """The users a list shows: searched by name, mobile or e-mail; filtered by role and by
    active (yes or no); sorted. Also the sort applied."""
    found = searched(User.select(), (User.username, User.mobile, User.email), query.q)
    if query.filter('role') in User.ROLES:
        found = found.where(User.role == query.filter('role'))
    if query.filter('active') in ('yes', 'no'):
        found = found.where(User.is_active == (query.filter('active') == 'yes'))
    return sorted_by(found, query.sort, USER_SORTS, '-id')


def account_or_404(user_id: int) -> User:
    return get_or_404(User.select(), User.id == user_id, missing=f'no user {user_id}')


@ROUTES.get('/api/v1/admin/users', 'Users: search q, filters role and active (yes/no), sort, page', auth='admin',
            query=ListQuery)
def list_users(query: ListQuery) -> dict:
    return ok(**api_page(paged(users_of(query)[0], query.page), staff_view))


@ROUTES.get('/api/v1/admin/users/<user_id:int>', 'A user with their orders and the audit of their account',
            auth='admin', statuses=(404,))
def one_user(user_id: int) -> dict:
    found = account_or_404(user_id)
    orders = Order.select().where(Order.user == found).order_by(Order.id.desc()).limit(100)
    return ok(result=staff_view(found), orders=[order.public() for order in orders], audit=audit.history(found))


@ROUTES.patch('/api/v1/admin/users/<user_id:int>', 'Change a role, disable or enable, set a password: a disabled '
              "account's tokens stop working at once", auth='admin', body=AccountChange, statuses=(404,))
def change_user(user_id: int, body: AccountChange, user: User) -> dict:
    found = account_or_404(user_id)
    try:
        changes = accounts.change_account(found, user, **body.model_dump(exclude_unset=True))
    except accounts.Refused as exc:
        raise ApiError(400, str(exc)) from None
    return ok('changed' if changes else 'nothing to change', result=staff_view(found), changed=sorted(changes))


@ROUTES.post('/api/v1/admin/users/<user_id:int>/reset-code', 'Send the user a password reset code by SMS',
             auth='admin', statuses=(202, 404, 429))
def send_reset_code(user_id: int, user: User, settings: Settings) -> dict:
    found = account_or_404(user_id)
    if not found.mobile:
        raise ApiError(400, 'this account has no mobile number: set a new password instead')
    try:
        code = Codes(cache, settings).issue(found.mobile, 'reset')
    except TooSoon as exc:
        raise ApiError(429, f'a code was just sent; ask again in {exc.retry_after} s') from None
    result = tasks.queue_sms_code(found.mobile, code, 'reset')
    audit.record(user, 'reset-code', found)
    return ok(f'a reset code is on its way to {masked_mobile(found.mobile)}', status=202, task_id=result.id)


def audit_of(query: ListQuery) -> ModelSelect:
    found = searched(AuditEntry.select(), (AuditEntry.actor_name, AuditEntry.changes), query.q)
    for name in ('kind', 'action'):
        if query.filter(name):
            found = found.where(getattr(AuditEntry, name) == query.filter(name))
    if query.filter('row_id').isdigit():
        found = found.where(AuditEntry.row_id == int(query.filter('row_id')))
    return found.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


@ROUTES.get('/api/v1/admin/audit', 'The audit log: every staff write; filters kind, row_id, action; search q',
            auth='admin', query=ListQuery)
def list_audit(query: ListQuery) -> dict:
    return ok(**api_page(paged(audit_of(query), query.page), audit.view))

