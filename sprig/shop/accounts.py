"""Accounts: scrypt password hashes, login tokens kept as keyed hashes, the rules of usernames,
mobiles and passwords, finding an account by its login name, and admins made from the command line."""
import base64
import datetime
import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
from typing import Annotated, Any

from peewee import IntegrityError, fn
from pydantic import AfterValidator, BeforeValidator, StrictStr, WithJsonSchema

from models import Token, User, database, utcnow
from sprig.shop import audit
from sprig.web.envelope import ApiError
from sprig.web.inputs import Input, validated

# scrypt cost: about 50 ms a hash here; 16 MiB of memory makes guessing on GPUs expensive.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MOBILE_PATTERN = r'1[3-9][0-9]{9}'  # [0-9], not \d: Python's \d takes any script's digits
MOBILE = re.compile(MOBILE_PATTERN)


def matching(pattern: str, message: str, schema: dict | None = None) -> Any:
    """A str type for pydantic fields that must match pattern whole, failing with message; its
    JSON Schema says the same (the pattern, unless `schema` says it in JSON Schema's terms)."""
    compiled = re.compile(pattern, re.DOTALL)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    schema = schema or {'pattern': f'^{pattern}$'}
    return Annotated[StrictStr, AfterValidator(check), WithJsonSchema({'type': 'string', **schema})]


def not_a_mobile(value: str) -> str:
    # Logins accept a username or a mobile number; one must not look like the other.
    if MOBILE.fullmatch(value):
        raise ValueError('must not be a mobile number')
    return value


def normal(value: Any) -> Any:
    """NFKC: full-width and other compatibility forms become the letters they show, so that
    ｖｉｃｔｉｍ_01 is victim_01 (and taken when that is)."""
    return unicodedata.normalize('NFKC', value) if isinstance(value, str) else value


def script(char: str) -> str | None:
    """The alphabet a letter belongs to (Chinese, Japanese and Korean counted as one)."""
    if not char.isalpha():
        return None
    first = unicodedata.name(char, 'UNKNOWN').split(' ')[0]
    return 'CJK' if first in ('CJK', 'HIRAGANA', 'KATAKANA', 'HANGUL') else first


def unmistakable(value: str) -> str:
    """Refuse a name that could pass for another: letters of two alphabets (a Cyrillic а among
    Latin ones), or a name wholly of Cyrillic or Greek letters that look Latin."""
    if len({script(char) for char in value} - {None, 'CJK'}) > 1:
        raise ValueError('must be written in one alphabet (letters of several look alike)')
    lookalike = value.translate(LATIN_LOOKALIKES)
    if lookalike != value and lookalike.isascii():
        raise ValueError('looks like a name in Latin letters: write it in Latin letters')
    return value


# Cyrillic and Greek letters that look like Latin ones.
LATIN_LOOKALIKES = str.maketrans('аеорсухіјѕԁԛԝһвкмнтАВЕКМНОРСТХІЈЅαοικνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ',
                                 'aeopcyxijsdqwhbkmhtABEKMHOPCTXIJSaoikvptuxABEZHIKMNOPTYX')
Mobile = matching(MOBILE_PATTERN, 'must be an 11-digit mobile number starting with 13 to 19')
Username = Annotated[matching(r'\w{5,20}', 'must be 5-20 letters, digits or underscores', {
    'minLength': 5, 'maxLength': 20, 'pattern': '^[^\\s@]+$', 'description': 'letters of one alphabet (Chinese, '
    'Japanese and Korean together), digits and underscores; not a mobile number; compared in NFKC and ignoring case'}),
                     BeforeValidator(normal), AfterValidator(not_a_mobile), AfterValidator(unmistakable)]
SmsCode = matching(r'[0-9]{6}', 'must be the 6 digits you received')
# Lower case: addresses are compared and kept as one spelling.
Email = Annotated[matching(r'(?=.{3,254}\Z)[^@\s]{1,64}@[^@\s]+\.[^@\s]+', 'must be an e-mail address', {
    'minLength': 3, 'maxLength': 254, 'pattern': '^[^@\\s]{1,64}@[^@\\s]+\\.[^@\\s]+$'}),
                  AfterValidator(str.lower)]
Password = matching(r'.{8,64}', 'must be 8-64 characters', {'minLength': 8, 'maxLength': 64})


class AdminAccount(Input):
    username: Username
    password: Password
    mobile: Mobile | None = None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f'scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}'


def verify_password(password: str, stored: str) -> bool:
    """True if password matches; the comparison takes the same time whatever matched."""
    try:
        _, n, r, p, salt, digest = stored.split('$')
        expected = base64.b64decode(digest)
        candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                   p=int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(candidate, expected)


@functools.cache
def decoy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def check_login(user: User | None, password: str) -> bool:
    """Verify a password; an unknown or disabled user costs the same time as a wrong password."""
    if user is None or not user.is_active:
        verify_password(password, decoy_hash())
        return False
    return verify_password(password, user.password_hash)


def keyed(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def issue_token(user: User, secret: str, ttl: int) -> str:
    """A new login token for user, valid for ttl seconds; only its keyed hash is stored."""
    token = secrets.token_urlsafe(32)
    User.update(last_login=utcnow()).where(User.id == user.id).execute()
    # Expired tokens are deleted by the hourly prune_records task.
    Token.create(digest=keyed(secret, token), user=user, expires=utcnow() + datetime.timedelta(seconds=ttl))
    return token


def revoke_token(token: str, secret: str) -> None:
    Token.delete().where(Token.digest == keyed(secret, token)).execute()


def find_login(name: str) -> User | None:
    """The account a login name designates: a mobile number, an e-mail address or a username."""
    if MOBILE.fullmatch(name):
        return User.get_or_none(User.mobile == name)
    if '@' in name:
        return User.get_or_none(User.email == name.lower())
    name = normal(name)
    return User.get_or_none(User.username == name) or User.get_or_none(fn.LOWER(User.username) == name.lower())


def conflicts(username: str, mobile: str | None, email: str | None = None) -> dict[str, str]:
    """The fields whose value another account already has."""
    taken = {}
    # Case does not tell two accounts apart: Alice_01 is taken when alice_01 is.
    if User.select().where(fn.LOWER(User.username) == username.lower()).exists():
        taken['username'] = 'already taken'
    if mobile and User.has_mobile(mobile):
        taken['mobile'] = 'already registered; sign in instead'
    if email and User.select().where(User.email == email).exists():
        taken['email'] = 'already registered'
    return taken


def conflict_error(taken: dict[str, str]) -> ApiError:
    return ApiError(409, f'already in use: {", ".join(taken)}', errors=taken)


def save_admin(username: str, password: str, mobile: str | None = None, role: str = 'admin') -> bool:
    """Create a staff account (an admin or an editor), or make an existing user one with this
    password. True if created.

    :raise ApiError 400: a bad username, password or mobile; 409: the mobile is another user's.
    """
    account = validated(AdminAccount, {'username': username, 'password': password, 'mobile': mobile})
    password_hash = hash_password(account.password)
    with database.atomic():
        user = User.get_or_none(User.username == account.username)
        if user is None:
            user = User(username=account.username)
        user.password_hash, user.role, user.is_active = password_hash, role, True
        user.mobile = account.mobile or user.mobile
        created = user.id is None
        try:
            user.save()
        except IntegrityError:
            raise conflict_error({'mobile': 'belongs to another user'}) from None
        if not created:  # a new password signs out every old session
            Token.delete().where(Token.user == user).execute()
    return created


# What staff do to accounts ----------------------------------------------------------------------

class Refused(Exception):
    """Staff may not make this change; str() says why."""


def change_account(user: User, actor: User, role: str | None = None, is_active: bool | None = None,
                   password: str | None = None) -> dict:
    """An admin changes an account: its role, whether it may sign in, its password. A disabled
    account and a new password sign out every session of the account at once. Returns the
    changes made, as audited.

    :raise Refused: an admin would lock themselves out (their own role or account).
    """
    values = {name: value for name, value in (('role', role), ('is_active', is_active)) if value is not None}
    if user.id == actor.id and (values.get('role', 'admin') != 'admin' or values.get('is_active') is False):
        raise Refused('you cannot take away your own admin rights or disable your own account')
    if password is not None:
        values['password_hash'] = hash_password(password)
    changes = audit.diff(user, values)
    action = {True: 'enable', False: 'disable'}.get(changes.get('is_active', [None, None])[1], 'change')
    with database.atomic():
        if changes:
            User.update(**values).where(User.id == user.id).execute()
        if 'password_hash' in changes or values.get('is_active') is False:
            Token.delete().where(Token.user == user.id).execute()
        if changes:
            audit.record(actor, action, user, changes)
    for name, value in values.items():
        setattr(user, name, value)
    return changes
