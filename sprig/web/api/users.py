"""Users and SMS codes: the /api/v1/user/ routes of API.md."""
import hmac
import secrets
from typing import Annotated, Literal

from peewee import IntegrityError
from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationInfo, field_validator

import tasks
from models import Token, User, database
from sprig.cache.store import cache
from sprig.queue import records
from sprig.settings import Settings
from sprig.shop.accounts import (
    Email,
    Mobile,
    Password,
    SmsCode,
    Username,
    check_login,
    conflict_error,
    conflicts,
    find_login,
    hash_password,
    keyed,
)
from sprig.shop.ratelimit import attempt, count, forgive, refuse_when_spent, throttle, too_many
from sprig.shop.sms import CodeRejected, Codes, TooSoon
from sprig.web.auth import Auth
from sprig.web.envelope import ApiError, client_address, ok, refuse
from sprig.web.inputs import Input
from sprig.web.routing import Routes

ROUTES = Routes()
WRONG_LOGIN = 'wrong username or password'
LOGIN_FAILURE_WINDOW = 900  # seconds an account's failed sign-ins are remembered


class MobileQuery(Input):
    mobile: Mobile


class SendCode(Input):
    mobile: Mobile
    scene: Literal['register', 'login', 'reset']


def repeats(first: str) -> AfterValidator:
    """A password typed twice: this field must be the same as `first`."""
    def check(value: str, info: ValidationInfo) -> str:
        if first in info.data and value != info.data[first]:
            raise ValueError('the two passwords differ')
        return value
    return AfterValidator(check)


class Register(Input):
    username: Username
    password: Password
    password2: Annotated[StrictStr, repeats('password')]
    mobile: Mobile
    sms_code: SmsCode
    allow: StrictBool
    email: Email | None = None

    @field_validator('allow')
    @classmethod
    def accepted(cls, value: bool) -> bool:
        if not value:
            raise ValueError('accept the terms to register')
        return value


class Login(Input):
    username: Annotated[StrictStr, Field(min_length=1, max_length=254)]
    password: Annotated[StrictStr, Field(min_length=1, max_length=128)]


class SmsLogin(Input):
    mobile: Mobile
    sms_code: SmsCode


def code_error(status: int, exc: CodeRejected) -> ApiError:
    return ApiError(status, str(exc), errors={'sms_code': str(exc)})


@ROUTES.get('/api/v1/user/mobile', 'Is this mobile number registered? 100 yes, 101 no', query=MobileQuery,
            statuses=(429,))
def check_mobile(query: MobileQuery, settings: Settings) -> dict:
    throttle(f'lookup:{client_address()}', settings.auth.lookups_per_minute, 60, 'lookups')
    return ok('registered') if User.has_mobile(query.mobile) else refuse('not registered')


@ROUTES.post('/api/v1/user/sms', 'Send a verification code by SMS (a task)', body=SendCode, statuses=(202, 409, 429))
def send_code(body: SendCode, settings: Settings) -> dict:
    sms = settings.sms
    # Counted first: the answers below say whether a mobile is registered.
    throttle(f'sms:{client_address()}', sms.per_address_hourly, 3600, 'codes from this address')
    registered = User.has_mobile(body.mobile)
    if body.scene == 'register' and registered:
        raise conflict_error({'mobile': 'already registered; sign in instead'})
    if body.scene in ('login', 'reset') and not registered:
        return refuse('mobile not registered', errors={'mobile': 'no account has this number: register first'})
    # Budgets that only codes really sent spend: a refused request costs the number nothing.
    refuse_when_spent(f'sms-mobile:{body.mobile}', sms.per_mobile_daily, 86400, 'codes to this number today')
    refuse_when_spent('sms-all', sms.global_hourly, 3600, 'codes sent this hour; the site is busy')
    codes = Codes(cache, settings)
    try:
        code = codes.issue(body.mobile, body.scene)
    except TooSoon as exc:
        wait = exc.retry_after
        raise too_many(f'a code was just sent; ask again in {wait} s', wait) from None
    try:
        result = tasks.queue_sms_code(body.mobile, code, body.scene)
    except Exception:
        codes.allow_resend(body.mobile)  # it never left: let the user ask again at once
        raise
    count(f'sms-mobile:{body.mobile}', 86400)
    count('sms-all', 3600)
    # Whoever holds the receipt (the page that asked) may ask whether the code was delivered.
    receipt = secrets.token_urlsafe(16)
    cache.set(f'sms-receipt:{result.id}', keyed(settings.app.secret_key, receipt), ttl=sms.code_ttl)
    return ok('sent', status=202, task_id=result.id, receipt=receipt, retry_after=sms.resend_interval)


class DeliveryQuery(Input):
    task_id: Annotated[str, Field(min_length=1, max_length=64)]
    receipt: Annotated[str, Field(min_length=1, max_length=64)]


DELIVERY = {'succeeded': (100, 'delivered'), 'failed': (104, 'could not be sent'), 'lost': (104, 'could not be sent')}


@ROUTES.get('/api/v1/user/sms/status', 'Was a code delivered? 100 yes, 102 sending, 104 could not be sent',
            query=DeliveryQuery, statuses=(404,))
def code_delivery(query: DeliveryQuery, settings: Settings) -> dict:
    """For the page that asked for the code (it holds the receipt), not for anyone with the task id."""
    stored = cache.get(f'sms-receipt:{query.task_id}')
    if stored is None or not hmac.compare_digest(stored, keyed(settings.app.secret_key, query.receipt)):
        raise ApiError(404, f'no code sent as {query.task_id}')
    record = records.find(tasks.huey, query.task_id)
    state = record.state if record is not None else 'queued'
    code, msg = DELIVERY.get(state, (102, 'sending'))
    return {'code': code, 'msg': msg}


@ROUTES.post('/api/v1/user/register', 'Register with an SMS code; signed in at once', body=Register,
             statuses=(201, 409, 429))
def register(body: Register, settings: Settings, auth: Auth) -> dict:
    throttle(f'lookup:{client_address()}', settings.auth.lookups_per_minute, 60, 'attempts')
    taken = conflicts(body.username, body.mobile, body.email)
    if taken:  # before the code check, so fixing the username does not cost a try
        raise conflict_error(taken)
    codes = Codes(cache, settings)
    try:
        codes.check(body.mobile, 'register', body.sms_code)
    except CodeRejected as exc:
        raise code_error(400, exc) from None
    password_hash = hash_password(body.password)  # slow: outside the transaction
    try:
        with database.atomic():
            user = User.create(username=body.username, mobile=body.mobile, email=body.email,
                               password_hash=password_hash)
            if not codes.consume(body.mobile, 'register'):
                raise CodeRejected('this code was just used; request a new one')
    except IntegrityError:
        # A concurrent registration won the race; the unique constraints said so.
        raise conflict_error(conflicts(body.username, body.mobile, body.email)
                             or {'username': 'already taken'}) from None
    except CodeRejected as exc:
        raise code_error(400, exc) from None
    return ok('registered', status=201, **auth.login(user))


@ROUTES.post('/api/v1/user/login', 'Sign in with username, mobile or e-mail and password', body=Login,
             statuses=(401, 429))
def login(body: Login, settings: Settings, auth: Auth) -> dict:
    limits = settings.auth
    throttle(f'login:{client_address()}', limits.logins_per_minute, 60, 'sign-in attempts')
    user = find_login(body.username)
    # Per account, whichever of its names is given (an unknown name counts for itself).
    account = f'login:user:{user.id}' if user else f'login:name:{body.username.lower()}'
    attempt(account, limits.login_failures, LOGIN_FAILURE_WINDOW,
            f'too many failed sign-ins for this account; try again in {LOGIN_FAILURE_WINDOW // 60} '
            'minutes, or sign in with an SMS code now', sms_login=True)
    if not check_login(user, body.password):
        raise ApiError(401, WRONG_LOGIN)
    forgive(account)
    return ok('signed in', **auth.login(user))


def redeemed(settings: Settings, mobile: str, scene: str, code: str, status: int) -> User | None:
    """The active account of mobile when code is its live code for scene, which is spent now;
    None when the code was right but no active account can use it.

    :raise ApiError status: a wrong, expired or exhausted code; 429: too many attempts here.
    """
    throttle(f'login:{client_address()}', settings.auth.logins_per_minute, 60, 'sign-in attempts')
    codes = Codes(cache, settings)
    try:
        codes.check(mobile, scene, code)
    except CodeRejected as exc:
        raise code_error(status, exc) from None
    user = User.get_or_none(User.mobile == mobile)
    if user is None or not user.is_active or not codes.consume(mobile, scene):
        return None
    return user


@ROUTES.post('/api/v1/user/login/sms', 'Sign in with an SMS code', body=SmsLogin, statuses=(401, 429))
def login_by_code(body: SmsLogin, settings: Settings, auth: Auth) -> dict:
    user = redeemed(settings, body.mobile, 'login', body.sms_code, 401)
    if user is None:
        raise ApiError(401, 'this code cannot sign you in; request a new one')
    return ok('signed in', **auth.login(user))


@ROUTES.get('/api/v1/user/me', 'The signed-in account', auth='user')
def me(user: User) -> dict:
    return ok(result=user.public())


@ROUTES.post('/api/v1/user/logout', 'Sign out (revokes the token; idempotent)', statuses=(403,))
def logout(auth: Auth) -> dict:
    auth.logout()  # idempotent: signing out twice is not an error
    return ok('signed out')


class PasswordChange(Input):
    password: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    new_password: Password
    new_password2: Annotated[StrictStr, repeats('new_password')]


@ROUTES.post('/api/v1/user/password', 'Change the password; every other session is signed out', auth='user',
             body=PasswordChange, statuses=(401,))
def change_password(user: User, body: PasswordChange, auth: Auth) -> dict:
    if not check_login(user, body.password):
        raise ApiError(400, 'invalid input: password', errors={'password': 'this is not your current password'})
    User.update(password_hash=hash_password(body.new_password)).where(User.id == user.id).execute()
    Token.delete().where(Token.user == user).execute()
    return ok('password changed', **auth.login(user))  # this session goes on, with a new token


class PasswordReset(Input):
    mobile: Mobile
    sms_code: SmsCode
    new_password: Password
    new_password2: Annotated[StrictStr, repeats('new_password')]


@ROUTES.post('/api/v1/user/password/reset', 'Set a new password with a reset code (scene reset); every session '
             'is signed out', body=PasswordReset, statuses=(429,))
def reset_password(body: PasswordReset, settings: Settings) -> dict:
    user = redeemed(settings, body.mobile, 'reset', body.sms_code, 400)
    if user is None:
        raise ApiError(400, 'this code cannot reset a password; request a new one')
    password_hash = hash_password(body.new_password)
    with database.atomic():
        User.update(password_hash=password_hash).where(User.id == user.id).execute()
        Token.delete().where(Token.user == user).execute()
    return ok('password changed: sign in with it')


@ROUTES.post('/api/v1/user/logout/all', 'Sign out everywhere: every token of the account is revoked', auth='user')
def logout_everywhere(user: User, auth: Auth) -> dict:
    Token.delete().where(Token.user == user).execute()
    auth.logout()
    return ok('signed out everywhere')
