"""Accounts: scrypt password hashes, login tokens kept as keyed hashes, and who a request comes from.

A request proves who it is with `Authorization: Bearer <token>` (API clients) or the HttpOnly
cookie the login answer sets (pages). Cookie-authenticated writes from another origin are refused.
"""
import base64
import datetime
import functools
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from bottle import request, response

from api import ApiError
from models import Token, User, first, prepared, utcnow
from settings import Settings

COOKIE = 'sprig_token'
# scrypt cost: about 50 ms a hash here; 16 MiB of memory makes guessing on GPUs expensive.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SAFE_METHODS = {'GET', 'HEAD', 'OPTIONS'}
# Who a token belongs to (digest, now): one indexed read on every signed-in request.
USER_BY_TOKEN = prepared(lambda: User.select().join(Token, on=(Token.user == User.id))
                         .where((Token.digest == '') & (Token.expires > utcnow()) & User.is_active))


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


class Auth:
    """Issues, reads and revokes login tokens for one app's settings."""

    def __init__(self, settings: Settings):
        self.secret = settings.app.secret_key
        self.ttl = settings.auth.token_ttl
        self.secure_cookie = urlsplit(settings.app.base_url).scheme == 'https'
        self.site = urlsplit(settings.app.base_url).netloc

    def login(self, user: User) -> dict:
        """A new token for user, set as the pages' cookie too; the body of a login answer."""
        token = secrets.token_urlsafe(32)
        User.update(last_login=utcnow()).where(User.id == user.id).execute()
        # Expired tokens are deleted by the hourly prune_records task.
        Token.create(digest=keyed(self.secret, token), user=user,
                     expires=utcnow() + datetime.timedelta(seconds=self.ttl))
        response.set_cookie(COOKIE, token, path='/', max_age=self.ttl, httponly=True,
                            samesite='lax', secure=self.secure_cookie)
        return {'token': token, 'username': user.username}

    def logout(self) -> None:
        """Revoke the request's token, if any, and drop the cookie."""
        if self.current_user() is not None:  # also refuses a cookie sent from another site
            token, _ = self.presented_token()
            Token.delete().where(Token.digest == keyed(self.secret, token)).execute()
        response.delete_cookie(COOKIE, path='/', httponly=True, samesite='lax',
                               secure=self.secure_cookie)

    def presented_token(self) -> tuple[str | None, bool]:
        """The request's token and whether it came from the cookie."""
        header = request.get_header('Authorization', '')
        if header.startswith('Bearer '):
            return header[7:].strip() or None, False
        return request.get_cookie(COOKIE) or None, True

    def current_user(self) -> User | None:
        """The signed-in user, or None; one indexed read, remembered for the rest of the request."""
        if 'sprig.user' not in request.environ:
            request.environ['sprig.user'] = self.lookup()
        return request.environ['sprig.user']

    def lookup(self) -> User | None:
        token, from_cookie = self.presented_token()
        if not token:
            return None
        if from_cookie and request.method not in SAFE_METHODS and not same_origin(self.site):
            raise ApiError(403, 'cross-site request refused')
        return first(User, USER_BY_TOKEN(), keyed(self.secret, token), utcnow())

    def require_user(self) -> User:
        """:raise ApiError 401: no valid token."""
        user = self.current_user()
        if user is None:
            raise ApiError(401, 'sign in first (missing, invalid or expired token)')
        return user

    def require_admin(self) -> User:
        """:raise ApiError 401: no valid token; 403: not an admin."""
        user = self.require_user()
        if not user.is_admin:
            raise ApiError(403, 'admins only')
        return user


def same_origin(site: str) -> bool:
    """False when the browser says the request comes from another site than this one (the
    public address, or the Host the request came to when no proxy rewrites it)."""
    origin = request.get_header('Origin')
    return origin is None or urlsplit(origin).netloc in (site, request.get_header('Host', ''))
