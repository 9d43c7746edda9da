"""Payments through a provider: the buyer is sent to the provider's checkout, the provider tells the
shop that an order was paid by a signed notice to POST /api/v1/payments/notify, and the buyer
comes back to the return page.

A notice is believed only when its signature is the provider's, it is recent, and its amount is
the order's; it is applied once per transaction (Payment rows), so a notice sent again changes
nothing. The one provider here is `simulated`: its checkout page is the shop's own, clearly
marked, and it signs its notices with a key derived from [app] secret_key. A real provider is
another class with the same two methods (checkout, verify).
"""
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

from peewee import IntegrityError

from models import Order, Payment, database
from sprig.settings import Settings
from sprig.shop import orders

NOTICE_MAX_AGE = 300  # seconds a notice stays believable: an older one is a replay


class Refused(Exception):
    """A notice not to believe, or one for an order that cannot be paid; str() says why."""


@dataclass(frozen=True)
class Notice:
    order_id: int
    amount: Decimal
    transaction: str
    sent_at: int


class Simulated:
    """A stand-in provider: no money moves. Its checkout is /pay/simulated/<order>."""

    name = 'simulated'

    def __init__(self, secret: str):
        self.key = hmac.new(secret.encode(), b'sprig payments: simulated', hashlib.sha256).digest()

    def checkout(self, order: Order, back: str) -> str:
        """Where to send the buyer to pay the order; `back` is where the provider returns them."""
        return f'/pay/simulated/{order.id}?back={quote(back, safe="")}'

    def notice(self, order: Order) -> dict:
        """The signed notice this provider sends once the buyer paid (its checkout page does)."""
        fields = {'order_id': order.id, 'amount': f'{order.price:.2f}',
                  'transaction': f'sim-{secrets.token_hex(12)}', 'sent_at': int(time.time())}
        return fields | {'signature': self.sign(fields)}

    def sign(self, fields: dict) -> str:
        return hmac.new(self.key, json.dumps(fields, sort_keys=True).encode(), hashlib.sha256).hexdigest()

    def verify(self, body: dict) -> Notice:
        """:raise Refused: the signature is not this provider's, or the notice is malformed."""
        fields = {key: body.get(key) for key in ('order_id', 'amount', 'transaction', 'sent_at')}
        signature = body.get('signature')
        # Bytes: compare_digest refuses str with characters beyond ASCII (a forger's).
        if not isinstance(signature, str) or not hmac.compare_digest(signature.encode(), self.sign(fields).encode()):
            raise Refused('the notice is not signed by the payment provider')
        try:
            return Notice(int(fields['order_id']), Decimal(fields['amount']), str(fields['transaction']),
                          int(fields['sent_at']))
        except (TypeError, ValueError, ArithmeticError):
            raise Refused('the notice is malformed') from None


def provider(settings: Settings) -> Simulated | None:
    """The configured provider; None when payments are not set up ([payments] provider empty and
    not [app] debug, which would use the simulated one)."""
    name = settings.payments.provider or ('simulated' if settings.app.debug else '')
    return Simulated(settings.app.secret_key) if name == 'simulated' else None


def accept(notice: Notice) -> Order:
    """Apply a believed notice: the order is paid (once, whatever the number of notices).

    :raise Refused: too old, for no order or another amount, or an order that cannot be paid.
    """
    if abs(time.time() - notice.sent_at) > NOTICE_MAX_AGE:
        raise Refused('the notice is too old')
    order = Order.get_or_none(Order.id == notice.order_id)
    if order is None or order.price != notice.amount:
        raise Refused('the notice names no order of this amount')
    try:
        with database.atomic():
            Payment.create(transaction=notice.transaction, order=order.id, provider='simulated',
                           amount=notice.amount)
            refusal = orders.pay(order)
            if refusal:
                raise Refused(refusal)
    except IntegrityError:  # this transaction was applied already: nothing more to do
        pass
    return Order.get_by_id(order.id)
