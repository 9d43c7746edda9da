"""Users and SMS codes: the /api/v1/user/ routes of API.md and the accounts they create."""
import re
from typing import Annotated, Any, Literal

from bottle import Bottle
from peewee import IntegrityError
from pydantic import AfterValidator, Field, StrictBool, StrictStr, ValidationInfo, field_validator

import tasks
from api import ApiError, Doc, Input, client_address, ok, parse_body, parse_query, refuse, validated
from auth import Auth, check_login, hash_password
from cache import cache
from models import Token, User, database
from ratelimit import count_failure, refuse_after_failures, throttle, too_many
from settings import Settings
from sms import CodeRejected, Codes, TooSoon

MOBILE_PATTERN = r'1[3-9][0-9]{9}'  # [0-9], not \d: Python's \d takes any script's digits
MOBILE = re.compile(MOBILE_PATTERN)
WRONG_LOGIN = 'wrong username or password'
LOGIN_FAILURE_WINDOW = 900  # seconds an account's failed sign-ins are remembered


def matching(pattern: str, message: str) -> Any:
    """A str type for pydantic fields that must match pattern whole, failing with message."""
    compiled = re.compile(pattern, re.DOTALL)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return Annotated[StrictStr, AfterValidator(check)]


def not_a_mobile(value: str) -> str:
    # Logins accept a username or a mobile number; one must not look like the other.
    if MOBILE.fullmatch(value):
        raise ValueError('must not be a mobile number')
    return value


Mobile = matching(MOBILE_PATTERN, 'must be an 11-digit mobile number starting with 13 to 19')
Username = Annotated[matching(r'\w{5,20}', 'must be 5-20 letters, digits or underscores'),
                     AfterValidator(not_a_mobile)]
SmsCode = matching(r'[0-9]{6}', 'must be the 6 digits you received')
# Lower case: addresses are compared and kept as one spelling.
Email = Annotated[matching(r'(?=.{3,254}\Z)[^@\s]{1,64}@[^@\s]+\.[^@\s]+', 'must be an e-mail address'),
                  AfterValidator(str.lower)]
Password = matching(r'.{8,64}', 'must be 8-64 characters')


class MobileQuery(Input):
    mobile: Mobile


class SendCode(Input):
    mobile: Mobile
    scene: Literal['register', 'login']


class Register(Input):
    username: Username
    password: Password
    password2: StrictStr
    mobile: Mobile
    sms_code: SmsCode
    allow: StrictBool
    email: Email | None = None

    @field_validator('password2')
    @classmethod
    def same_password(cls, value: str, info: ValidationInfo) -> str:
        if 'password' in info.data and value != info.data['password']:
            raise ValueError('the two passwords differ')
        return value

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


class AdminAccount(Input):
    username: Username
    password: Password
    mobile: Mobile | None = None


def conflicts(username: str, mobile: str | None, email: str | None = None) -> dict[str, str]:
    """The fields whose value another account already has."""
    taken = {}
    if User.select().where(User.username == username).exists():
        taken['username'] = 'already taken'
    if mobile and User.has_mobile(mobile):
        taken['mobile'] = 'already registered; sign in instead'
    if email and User.select().where(User.email == email).exists():
        taken['email'] = 'already registered'
    return taken


def conflict_error(taken: dict[str, str]) -> ApiError:
    return ApiError(409, f'already in use: {", ".join(taken)}', errors=taken)


def find_login(name: str) -> User | None:
    """The account a login name designates: a mobile number, an e-mail address or a username."""
    if MOBILE.fullmatch(name):
        return User.get_or_none(User.mobile == name)
    if '@' in name:
        return User.get_or_none(User.email == name.lower())
    return User.get_or_none(User.username == name)


def code_error(status: int, exc: CodeRejected) -> ApiError:
    return ApiError(status, str(exc), errors={'sms_code': str(exc)})


def save_admin(username: str, password: str, mobile: str | None = None) -> bool:
    """Create an admin, or make an existing user one with this password. True if created.

    :raise ApiError 400: a bad username, password or mobile; 409: the mobile is another user's.
    """
    account = validated(AdminAccount, {'username': username, 'password': password, 'mobile': mobile})
    password_hash = hash_password(account.password)
    with database.atomic():
        user = User.get_or_none(User.username == account.username)
        if user is None:
            user = User(username=account.username)
        user.password_hash, user.is_admin, user.is_active = password_hash, True, True
        user.mobile = account.mobile or user.mobile
        created = user.id is None
        try:
            user.save()
        except IntegrityError:
            raise conflict_error({'mobile': 'belongs to another user'}) from None
        if not created:  # a new password signs out every old session
            Token.delete().where(Token.user == user).execute()
    return created


class UserApi:
    """The /api/v1/user/ routes, for one app's settings."""

    def __init__(self, settings: Settings, auth: Auth):
        self.settings, self.auth = settings, auth
        self.codes = Codes(cache, settings)
        self.limit = settings.app.max_body_kb * 1024

    def install(self, app: Bottle) -> None:
        app.get('/api/v1/user/mobile', callback=self.check_mobile,
                doc=Doc('Is this mobile number registered? 100 yes, 101 no', query=MobileQuery, statuses=(429,)))
        app.post('/api/v1/user/sms', callback=self.send_code,
                 doc=Doc('Send a verification code by SMS (a task)', body=SendCode, statuses=(202, 409, 429)))
        app.post('/api/v1/user/register', callback=self.register,
                 doc=Doc('Register with an SMS code; signed in at once', body=Register, statuses=(201, 409, 429)))
        app.post('/api/v1/user/login', callback=self.login,
                 doc=Doc('Sign in with username, mobile or e-mail and password', body=Login, statuses=(401, 429)))
        app.post('/api/v1/user/login/sms', callback=self.login_by_code,
                 doc=Doc('Sign in with an SMS code', body=SmsLogin, statuses=(401, 429)))
        app.get('/api/v1/user/me', callback=self.me, doc=Doc('The signed-in account', auth='user'))
        app.post('/api/v1/user/logout', callback=self.logout, doc=Doc('Sign out (revokes the token; idempotent)'))

    def check_mobile(self) -> dict:
        query = parse_query(MobileQuery)
        throttle(f'lookup:{client_address()}', self.settings.auth.lookups_per_minute, 60, 'lookups')
        return ok('registered') if User.has_mobile(query.mobile) else refuse('not registered')

    def send_code(self) -> dict:
        body = parse_body(SendCode, self.limit)
        sms = self.settings.sms
        # Counted first: the answers below say whether a mobile is registered.
        throttle(f'sms:{client_address()}', sms.per_address_hourly, 3600, 'codes from this address')
        registered = User.has_mobile(body.mobile)
        if body.scene == 'register' and registered:
            raise conflict_error({'mobile': 'already registered; sign in instead'})
        if body.scene == 'login' and not registered:
            return refuse('mobile not registered')
        throttle(f'sms-mobile:{body.mobile}', sms.per_mobile_daily, 86400, 'codes to this number today')
        try:
            code = self.codes.issue(body.mobile, body.scene)
        except TooSoon as exc:
            wait = exc.retry_after
            raise too_many(f'a code was just sent; ask again in {wait} s', wait) from None
        try:
            result = tasks.queue_sms_code(body.mobile, code, body.scene)
        except Exception:
            self.codes.allow_resend(body.mobile)  # it never left: let the user ask again at once
            raise
        return ok('sent', status=202, task_id=result.id, retry_after=sms.resend_interval)

    def register(self) -> dict:
        body = parse_body(Register, self.limit)
        throttle(f'lookup:{client_address()}', self.settings.auth.lookups_per_minute, 60, 'attempts')
        taken = conflicts(body.username, body.mobile, body.email)
        if taken:  # before the code check, so fixing the username does not cost a try
            raise conflict_error(taken)
        try:
            self.codes.check(body.mobile, 'register', body.sms_code)
        except CodeRejected as exc:
            raise code_error(400, exc) from None
        password_hash = hash_password(body.password)  # slow: outside the transaction
        try:
            with database.atomic():
                user = User.create(username=body.username, mobile=body.mobile, email=body.email,
                                   password_hash=password_hash)
                if not self.codes.consume(body.mobile, 'register'):
                    raise CodeRejected('this code was just used; request a new one')
        except IntegrityError:
            # A concurrent registration won the race; the unique constraints said so.
            raise conflict_error(conflicts(body.username, body.mobile, body.email)
                                 or {'username': 'already taken'}) from None
        except CodeRejected as exc:
            raise code_error(400, exc) from None
        return ok('registered', status=201, **self.auth.login(user))

    def login(self) -> dict:
        body = parse_body(Login, self.limit)
        auth = self.settings.auth
        throttle(f'login:{client_address()}', auth.logins_per_minute, 60, 'sign-in attempts')
        account = f'login-failures:{body.username.lower()}'
        refuse_after_failures(account, auth.login_failures, LOGIN_FAILURE_WINDOW)
        user = find_login(body.username)
        if not check_login(user, body.password):
            count_failure(account, LOGIN_FAILURE_WINDOW)
            raise ApiError(401, WRONG_LOGIN)
        return ok('signed in', **self.auth.login(user))

    def login_by_code(self) -> dict:
        body = parse_body(SmsLogin, self.limit)
        throttle(f'login:{client_address()}', self.settings.auth.logins_per_minute, 60, 'sign-in attempts')
        try:
            self.codes.check(body.mobile, 'login', body.sms_code)
        except CodeRejected as exc:
            raise code_error(401, exc) from None
        user = User.get_or_none(User.mobile == body.mobile)
        if user is None or not user.is_active or not self.codes.consume(body.mobile, 'login'):
            raise ApiError(401, 'this code cannot sign you in; request a new one')
        return ok('signed in', **self.auth.login(user))

    def me(self) -> dict:
        return ok(result=self.auth.require_user().public())

    def logout(self) -> dict:
        self.auth.logout()  # idempotent: signing out twice is not an error
        return ok('signed out')
