"""SMS verification codes: issued into the cache as keyed hashes, checked against an attempt limit,
and delivered by a backend (console for development, Tencent Cloud SMS for production).

Web-free on purpose: tasks.py sends through it in consumers that never load the web app.
"""
import datetime
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from sprig.cache.store import Cache
from sprig.settings import Settings, SmsSettings

log = logging.getLogger('sprig.sms')


class TooSoon(Exception):
    """A code was sent to this mobile less than [sms] resend_interval seconds ago."""

    def __init__(self, retry_after: int):
        super().__init__(f'retry after {retry_after} s')
        self.retry_after = retry_after


class CodeRejected(Exception):
    """The code is wrong, expired, used up or dead after too many tries; str() says which."""


class SendFailed(Exception):
    """The SMS provider refused the message."""


def seal(code: str, secret: str) -> str:
    """The code encrypted for the queue: XOR with a pad that only the secret and a fresh nonce
    make (HMAC-SHA256), so each sealed code is readable only where [app] secret_key is known."""
    nonce = secrets.token_hex(8)
    sealed = bytes(a ^ b for a, b in zip(code.encode(), pad(secret, nonce), strict=False))
    return f'{nonce}:{sealed.hex()}'


def unseal(sealed: str, secret: str) -> str:
    nonce, _, text = sealed.partition(':')
    return bytes(a ^ b for a, b in zip(bytes.fromhex(text), pad(secret, nonce), strict=False)).decode()


def pad(secret: str, nonce: str) -> bytes:
    return hmac.new(secret.encode(), f'sms-seal:{nonce}'.encode(), 'sha256').digest()


def masked_mobile(mobile: str) -> str:
    return f'{mobile[:3]}****{mobile[-4:]}'


class Codes:
    """One live code per mobile and scene, stored as a keyed hash with a TTL and a try counter."""

    def __init__(self, cache: Cache, settings: Settings):
        self.cache = cache
        self.secret = settings.app.secret_key
        self.sms = settings.sms

    def keyed(self, mobile: str, scene: str, code: str) -> str:
        message = f'{scene}:{mobile}:{code}'.encode()
        return hmac.new(self.secret.encode(), message, 'sha256').hexdigest()

    def issue(self, mobile: str, scene: str) -> str:
        """A fresh six-digit code for mobile; the previous one stops working.

        :raise TooSoon: a code went to this mobile less than resend_interval seconds ago.
        """
        now, interval = time.time(), self.sms.resend_interval
        if interval and not self.cache.add(f'sms:sent:{mobile}', now, ttl=interval):
            sent_at = self.cache.get(f'sms:sent:{mobile}', now)
            raise TooSoon(max(1, math.ceil(interval - (now - sent_at))))
        code = f'{secrets.randbelow(10**6):06d}'
        self.cache.set(f'sms:code:{scene}:{mobile}', self.keyed(mobile, scene, code), ttl=self.sms.code_ttl)
        self.cache.delete(f'sms:tries:{scene}:{mobile}')
        return code

    def allow_resend(self, mobile: str) -> None:
        """Forget the last send, when it never left (the queue refused it)."""
        self.cache.delete(f'sms:sent:{mobile}')

    def check(self, mobile: str, scene: str, code: str) -> None:
        """Accept the live code or count a wrong try; the code stays until consume().

        :raise CodeRejected: with the reason, for the sms_code field.
        """
        key = f'sms:code:{scene}:{mobile}'
        stored = self.cache.get(key)
        if stored is None:
            raise CodeRejected('no valid code: it expired, was used, or was never sent; request a new one')
        # Count the try before comparing: concurrent guesses cannot all slip in under the limit.
        tries = self.cache.incr(f'sms:tries:{scene}:{mobile}', ttl=self.sms.code_ttl)
        if tries <= self.sms.max_attempts and hmac.compare_digest(stored, self.keyed(mobile, scene, code)):
            return
        if tries >= self.sms.max_attempts:
            self.cache.delete(key)
            raise CodeRejected('too many wrong codes; request a new one')
        raise CodeRejected(f'wrong code ({self.sms.max_attempts - tries} tries left)')

    def consume(self, mobile: str, scene: str) -> bool:
        """Use the code up; False if a concurrent request used it first."""
        return self.cache.delete(f'sms:code:{scene}:{mobile}') == 1


class ConsoleBackend:
    """Development delivery: the code goes to the log, and to the outbox file when one is set."""

    lock = threading.Lock()

    def __init__(self, outbox: Path | None):
        self.outbox = outbox

    def send(self, mobile: str, code: str, scene: str) -> None:
        log.info('SMS to %s [%s]: your code is %s', masked_mobile(mobile), scene, code)
        if self.outbox is None:
            return
        line = json.dumps({'mobile': mobile, 'code': code, 'scene': scene,
                           'sent_at': datetime.datetime.now(datetime.UTC).isoformat()})
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, open(os.open(self.outbox, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), 'a',
                             encoding='utf-8') as out:  # it holds codes: the owner's alone
            out.write(line + '\n')


class TencentBackend:
    """Tencent Cloud SMS through its official SDK (requirements-tencent.txt)."""

    def __init__(self, sms: SmsSettings, code_ttl: int):
        self.sms = sms
        self.minutes = str(max(1, code_ttl // 60))

    def client(self) -> Any:
        """An SDK client (the SDK is optional, so it is imported only here)."""
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        scheme, _, host = self.sms.tencent_endpoint.rpartition('://')
        http = HttpProfile(protocol=scheme or 'https', endpoint=host, reqTimeout=10)
        return sms_client.SmsClient(credential.Credential(self.sms.tencent_secret_id,
                                                          self.sms.tencent_secret_key),
                                    self.sms.tencent_region, ClientProfile(httpProfile=http))

    def send(self, mobile: str, code: str, scene: str) -> None:
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.PhoneNumberSet = [f'+86{mobile}']
        request.SmsSdkAppId = self.sms.tencent_app_id
        request.SignName = self.sms.tencent_sign_name
        request.TemplateId = self.sms.tencent_template_id
        request.TemplateParamSet = [code, self.minutes]
        status = self.client().SendSms(request).SendStatusSet[0]
        if status.Code != 'Ok':
            raise SendFailed(f'{status.Code}: {status.Message}')
        log.info('SMS to %s [%s] accepted by Tencent (%s)', masked_mobile(mobile), scene, status.SerialNo)


def create_backend(settings: Settings) -> ConsoleBackend | TencentBackend:
    if settings.sms.backend == 'tencent':
        return TencentBackend(settings.sms, settings.sms.code_ttl)
    return ConsoleBackend(settings.sms.outbox)
