"""Who a request comes from: `Authorization: Bearer <token>` (API clients) or the HttpOnly cookie
the login answer sets (pages). Cookie-authenticated writes from another origin are refused."""
from urllib.parse import urlsplit

from bottle import request, response

from models import Token, User, utcnow
from sprig.db.prepared import first, prepared
from sprig.settings import Settings
from sprig.shop.accounts import issue_token, keyed, revoke_token
from sprig.web.envelope import ApiError

COOKIE = 'sprig_token'
SAFE_METHODS = {'GET', 'HEAD', 'OPTIONS'}
LEVELS = ('public', 'user', 'editor', 'admin')  # what a route may require, least first
# The roles each staff level admits: an editor runs the content, an admin everything.
ROLES_OF = {'editor': ('editor', 'admin'), 'admin': ('admin',)}
# Who a token belongs to (digest, now): one indexed read on every signed-in request.
USER_BY_TOKEN = prepared(lambda: User.select().join(Token, on=(Token.user == User.id))
                         .where((Token.digest == '') & (Token.expires > utcnow()) & User.is_active))


class Auth:
    """Issues, reads and revokes login tokens for one app's settings."""

    def __init__(self, settings: Settings):
        self.secret = settings.app.secret_key
        self.ttl = settings.auth.token_ttl
        self.secure_cookie = urlsplit(settings.app.public_url).scheme == 'https'
        self.site = urlsplit(settings.app.public_url).netloc

    def login(self, user: User) -> dict:
        """A new token for user, set as the pages' cookie too; the body of a login answer."""
        token = issue_token(user, self.secret, self.ttl)
        response.set_cookie(COOKIE, token, path='/', max_age=self.ttl, httponly=True,
                            samesite='lax', secure=self.secure_cookie)
        return {'token': token, 'username': user.username}

    def logout(self) -> None:
        """Revoke the request's token, if any, and drop the cookie."""
        if self.current_user() is not None:  # also refuses a cookie sent from another site
            token, _ = self.presented_token()
            revoke_token(token, self.secret)
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

    def require(self, level: str) -> User | None:
        """The user a route of this level needs (None for a public route).

        :raise ApiError 401: no valid token; 403: a staff route, and not of a role it admits.
        """
        if level == 'public':
            return self.current_user()
        user = self.current_user()
        if user is None:
            raise ApiError(401, 'sign in first (missing, invalid or expired token)')
        if level in ROLES_OF and user.role not in ROLES_OF[level]:
            raise ApiError(403, 'admins only' if level == 'admin' else 'editors and admins only')
        return user


def same_origin(site: str) -> bool:
    """False when the browser says the request comes from another site than this one (the
    public address, or the Host the request came to when no proxy rewrites it)."""
    origin = request.get_header('Origin')
    return origin is None or urlsplit(origin).netloc in (site, request.get_header('Host', ''))
