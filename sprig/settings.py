"""Settings: config.ini, an optional overlay file and SPRIG_* variables, read once into typed values.

Every key has its default in the shipped config.ini, so that file is the one reference. A bad
value raises SettingsError with one line that names the key; start-up prints it and stops.
"""
import configparser
import contextlib
import importlib.util
import ipaddress
import os
import secrets
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_FILE = PROJECT_DIR / 'config.ini'
# Variables with a meaning of their own rather than one key each.
ALIASES = {'SPRIG_DATA_DIR': ('app', 'data_dir')}
SPECIAL = {'SPRIG_CONFIG'}

SQL_SCHEMES = {'sqlite', 'postgres', 'postgresql', 'mysql'}
REDIS_SCHEMES = {'redis', 'rediss'}
WEAK_SECRETS = {'secret', 'changeme', 'change-me', 'change_me', 'dev', 'development'}


class SettingsError(Exception):
    """A setting is missing or bad; the message names the key and says what would do."""


def limits(low: int, high: int | None = None) -> Any:
    """A dataclass field whose whole number must lie in [low, high]."""
    return field(metadata={'min': low, 'max': high})


@dataclass(frozen=True)
class AppSettings:
    host: str
    port: int = limits(1, 65535)
    base_url: str
    secret_key: str = field(repr=False)
    debug: bool
    data_dir: Path
    threads: int = limits(1, 256)
    processes: int = field(metadata={'min': 1, 'max': 64, 'auto': 0})  # auto: 0 until resolved
    max_body_kb: int = limits(1)
    connection_limit: int = limits(10, 100_000)
    request_timeout: int = limits(1)
    idle_timeout: int = limits(1)
    min_free_mb: int = limits(0)
    access_log: bool
    log_format: str
    trusted_proxy: str
    timezone: str

    @property
    def public_url(self) -> str:
        """[app] base_url; when empty, the address served (a wildcard host read as this machine)."""
        if self.base_url:
            return self.base_url
        host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(self.host, self.host)
        return f'http://[{host}]:{self.port}' if ':' in host else f'http://{host}:{self.port}'


@dataclass(frozen=True)
class DatabaseSettings:
    url: str


@dataclass(frozen=True)
class QueueSettings:
    url: str
    name: str
    workers: int = limits(1, 64)
    shutdown_timeout: int = limits(0)
    heartbeat_timeout: int = limits(3)
    max_retry_delay: int = limits(1)
    retention_hours: int = limits(1)
    records: bool
    immediate: bool


@dataclass(frozen=True)
class CacheSettings:
    url: str
    prefix: str
    ttl: int = limits(1)
    double_delete_delay: int = limits(0, 60_000)


@dataclass(frozen=True)
class BannerSettings:
    count: int = limits(1, 100)
    refresh_interval: int = limits(1)


@dataclass(frozen=True)
class SeckillSettings:
    payment_timeout: int = limits(1)
    poll_interval: int = limits(1, 60)


@dataclass(frozen=True)
class PaymentSettings:
    provider: str


@dataclass(frozen=True)
class AdminSettings:
    upload_dir: Path | None
    upload_max_kb: int = limits(1, 1024 * 1024)
    audit_retention_days: int = limits(1)


@dataclass(frozen=True)
class MetricsSettings:
    token: str = field(repr=False)
    allow: str
    directory: Path | None


@dataclass(frozen=True)
class AuthSettings:
    token_ttl: int = limits(60)
    lookups_per_minute: int = limits(0)
    logins_per_minute: int = limits(0)
    login_failures: int = limits(0)


@dataclass(frozen=True)
class SmsSettings:
    backend: str
    code_ttl: int = limits(1)
    max_attempts: int = limits(1, 100)
    resend_interval: int = limits(0)
    per_address_hourly: int = limits(0)
    per_mobile_daily: int = limits(0)
    global_hourly: int = limits(0)
    send_retries: int = limits(0, 10)
    outbox: Path | None
    tencent_secret_id: str
    tencent_secret_key: str = field(repr=False)
    tencent_region: str
    tencent_app_id: str
    tencent_sign_name: str
    tencent_template_id: str
    tencent_endpoint: str


@dataclass(frozen=True)
class Settings:
    app: AppSettings
    database: DatabaseSettings
    queue: QueueSettings
    cache: CacheSettings
    banner: BannerSettings
    auth: AuthSettings
    sms: SmsSettings
    seckill: SeckillSettings
    payments: PaymentSettings
    admin: AdminSettings
    metrics: MetricsSettings


SECTIONS = {f.name: f.type for f in fields(Settings)}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read config.ini, the SPRIG_CONFIG overlay and SPRIG_* variables into one Settings.

    :raise SettingsError: with one line naming the bad key.
    """
    environ = os.environ if environ is None else environ
    raw = read_files(environ.get('SPRIG_CONFIG'))
    raw.update(env_overrides(environ))
    typed = {name: convert_section(name, cls, raw) for name, cls in SECTIONS.items()}
    return resolve(Settings(**typed))


def read_files(overlay: str | None) -> dict[tuple[str, str], str]:
    raw = parse_file(DEFAULT_FILE)
    if overlay:
        path = project_path(overlay)
        if not path.is_file():
            raise SettingsError(f'SPRIG_CONFIG: no such file: {path}')
        extra = parse_file(path)
        unknown = sorted(set(extra) - set(raw))
        if unknown:
            section, key = unknown[0]
            raise SettingsError(f'{path}: unknown setting [{section}] {key}')
        raw.update(extra)
    return raw


def parse_file(path: Path) -> dict[tuple[str, str], str]:
    # No interpolation, so that a password may contain '%'.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding='utf-8')
    except configparser.Error as exc:
        raise SettingsError(f'{path}: {exc.message.splitlines()[0]}') from None
    return {(s, k): v.strip() for s in parser.sections() for k, v in parser[s].items()}


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    known = {f'SPRIG_{s}_{f.name}'.upper(): (s, f.name)
             for s, cls in SECTIONS.items() for f in fields(cls)}
    known.update(ALIASES)
    found = {}
    for name, value in environ.items():
        if not name.startswith('SPRIG_') or name in SPECIAL:
            continue
        if name not in known:
            raise SettingsError(f'{name}: no such setting (see config.ini for the keys)')
        found[known[name]] = value.strip()
    return found


def convert_section(section: str, cls: type, raw: Mapping[tuple[str, str], str]):
    values = {}
    for f in fields(cls):
        if (section, f.name) not in raw:
            raise SettingsError(f'[{section}] {f.name}: missing from {DEFAULT_FILE.name}')
        values[f.name] = convert(f'[{section}] {f.name}', f, raw[section, f.name])
    return cls(**values)


def convert(label: str, f, text: str):
    if f.type is bool:
        if text.lower() not in configparser.ConfigParser.BOOLEAN_STATES:
            raise SettingsError(f'{label}: {text!r} is not true or false')
        return configparser.ConfigParser.BOOLEAN_STATES[text.lower()]
    if f.type is int:
        if text.lower() == 'auto' and 'auto' in f.metadata:
            return f.metadata['auto']
        return convert_int(label, text, f.metadata.get('min'), f.metadata.get('max'))
    if f.type is Path:
        if not text:  # an unset shell variable, say: it would mean the project directory itself
            raise SettingsError(f'{label}: empty; name a directory')
        return project_path(text)
    if f.type == Path | None:
        return project_path(text) if text else None
    return text


def convert_int(label: str, text: str, low: int | None, high: int | None) -> int:
    try:
        number = int(text)
    except ValueError:
        raise SettingsError(f'{label}: {text!r} is not a whole number') from None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f'from {low} to {high}' if high is not None else f'at least {low}'
        raise SettingsError(f'{label}: {number} is out of range ({bounds})')
    return number


def project_path(text: str) -> Path:
    return (PROJECT_DIR / Path(text).expanduser()).resolve()


def scheme(url: str) -> str:
    return urlsplit(url).scheme.split('+')[0].lower()


def sqlite_file(url: str) -> Path:
    """The file of a resolved sqlite:/// URL; a missing file is created readable by its owner
    alone (0600; SQLite gives its -wal and -shm files the same mode), in a directory created
    likewise (0700) when missing."""
    path = Path(url.split(':///', 1)[1].partition('?')[0])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def masked(url: str) -> str:
    """The URL with its password hidden, for logs and banners."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return url.replace(f':{parts.password}@', ':***@', 1)


def resolve(s: Settings) -> Settings:
    """Fill in the defaults that depend on the data directory and check values against each other."""
    data = s.app.data_dir
    database = resolve_url('[database] url', s.database.url, data / 'sprig.db', SQL_SCHEMES)
    queue = resolve_url('[queue] url', s.queue.url, data / 'queue.db', {'sqlite'} | REDIS_SCHEMES)
    cache = resolve_url('[cache] url', s.cache.url, data / 'cache.db',
                        {'sqlite', 'memory'} | REDIS_SCHEMES)
    if scheme(cache) == 'memory' and scheme(queue) in REDIS_SCHEMES:
        raise SettingsError('[cache] url: memory:// lives in one process, but a Redis queue is '
                            'consumed by other processes that must share the cache; '
                            'use sqlite:/// or redis://')
    check_base_url(s.app.base_url)
    check_timezone(s.app.timezone)
    if s.app.log_format not in ('text', 'json'):
        raise SettingsError(f'[app] log_format: {s.app.log_format!r} is not text or json')
    if not s.queue.name.replace('-', '').replace('_', '').isalnum():
        raise SettingsError(f'[queue] name: {s.queue.name!r} may hold only letters, digits, - and _')
    check_sms(s.sms)
    check_metrics(s.metrics)
    if s.payments.provider not in ('', 'simulated'):
        raise SettingsError(f'[payments] provider: unknown provider {s.payments.provider!r} (use simulated)')
    shared_db = scheme(database) != 'sqlite'
    secret = resolve_secret(s.app.secret_key, data, s.app.debug, shared_db)
    return replace(
        s,
        app=replace(s.app, base_url=s.app.base_url.rstrip('/'), secret_key=secret,
                    processes=s.app.processes or web_processes(cache)),
        database=DatabaseSettings(url=database),
        queue=replace(s.queue, url=queue),
        cache=replace(s.cache, url=cache),
        admin=replace(s.admin, upload_dir=s.admin.upload_dir or data / 'uploads'),
        metrics=replace(s.metrics, directory=s.metrics.directory or data / 'metrics'),
    )


def web_processes(cache_url: str) -> int:
    """[app] processes = auto: one web process per core, when the cache can be shared."""
    return 1 if scheme(cache_url) == 'memory' else max(1, min(64, len(os.sched_getaffinity(0))))


def check_metrics(m: MetricsSettings) -> None:
    if m.token and len(m.token) < 16:
        raise SettingsError('[metrics] token: too short (16 characters or more; empty turns /metrics off)')
    for part in filter(None, (part.strip() for part in m.allow.split(','))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f'[metrics] allow: {part!r} is not an address or a network like 10.0.0.0/8') from None


def check_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f'[app] timezone: unknown time zone {name!r} (an IANA name, e.g. Asia/Shanghai)') from None


def resolve_url(label: str, url: str, default: Path, allowed: set[str]) -> str:
    """Return an absolute URL: the default SQLite file when empty, SQLite paths made absolute."""
    if not url:
        return f'sqlite:///{default}'
    kind = scheme(url)
    if kind not in allowed:
        names = ', '.join(f'{name}://' for name in sorted(allowed))
        raise SettingsError(f'{label}: unknown backend {kind or url!r} (use one of {names})')
    if kind == 'memory':
        return 'memory://'
    if kind == 'sqlite':
        return sqlite_url(label, url)
    return checked_server_url(label, url)


def sqlite_url(label: str, url: str) -> str:
    rest = url.split(':', 1)[1]
    if not rest.startswith('///') or rest in ('///', '////'):
        raise SettingsError(f'{label}: {url!r} names no file; write sqlite:///relative/path.db '
                            'or sqlite:////absolute/path.db')
    path, _, query = rest[3:].partition('?')
    absolute = project_path(path)
    return f'sqlite:///{absolute}' + (f'?{query}' if query else '')


def checked_server_url(label: str, url: str) -> str:
    parts = urlsplit(url)
    try:
        _ = parts.port  # parsed on access
    except ValueError:
        raise SettingsError(f'{label}: {url!r} has a bad port') from None
    if not parts.hostname:
        raise SettingsError(f'{label}: {url!r} names no host')
    if scheme(url) in SQL_SCHEMES and not parts.path.strip('/'):
        raise SettingsError(f'{label}: {url!r} names no database')
    return url


def check_sms(sms: SmsSettings) -> None:
    if sms.backend == 'console':
        return
    if sms.backend != 'tencent':
        raise SettingsError(f'[sms] backend: unknown backend {sms.backend!r} (use console or tencent)')
    for name in ('secret_id', 'secret_key', 'region', 'app_id', 'sign_name', 'template_id', 'endpoint'):
        if not getattr(sms, f'tencent_{name}'):
            raise SettingsError(f'[sms] tencent_{name}: required by the tencent backend')
    if importlib.util.find_spec('tencentcloud') is None:
        raise SettingsError('[sms] backend: tencent needs its SDK: '
                            '.venv/bin/pip install -r requirements-tencent.txt')


def check_base_url(url: str) -> None:
    if not url:  # the address served (AppSettings.public_url)
        return
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise SettingsError(f'[app] base_url: {url!r} is not an http:// or https:// address')


def resolve_secret(secret: str, data_dir: Path, debug: bool, shared_db: bool) -> str:
    """Use the configured secret, or on one machine the generated one kept in the data directory."""
    if secret:
        if not debug and (len(secret) < 32 or secret.lower() in WEAK_SECRETS):
            raise SettingsError('[app] secret_key: too weak; use 32+ random characters, e.g. '
                                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return secret
    if shared_db and not debug:
        raise SettingsError('[app] secret_key: missing; machines that share a database must '
                            'share a secret: set SPRIG_APP_SECRET_KEY to 32+ random characters')
    return stored_secret(data_dir / 'secret_key')


def stored_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f'.secret_key.{os.getpid()}')
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as out:
            out.write(secrets.token_urlsafe(32))
        # link() never replaces: when two processes start at once, the first file wins whole.
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def absolute_url(url: str, base_url: str) -> str:
    """A stored path as an absolute URL on [app] base_url; an absolute URL stays as it is."""
    if not url or url.startswith(('http://', 'https://')):
        return url
    return f'{base_url.rstrip("/")}/{url.lstrip("/")}'
