"""The flash-sale page in headless Chromium against `python app.py`: sign in from the page, press,
watch it poll to the outcome and stop; a second user after the sell-out; a sale not started."""
import datetime
import json
import re
import urllib.request

import pytest
from conftest import make_settings, shot, start_site
from playwright.sync_api import Page, expect

import tasks
from models import Course, SeckillItem, User, database, utcnow
from sprig.db.schema import create_tables
from sprig.shop.accounts import hash_password

PASSWORD = 'buyer password 1'


@pytest.fixture
def site(spawn, tmp_path):
    url = start_site(spawn, tmp_path, SPRIG_SECKILL_POLL_INTERVAL='1')
    tasks.configure(make_settings(tmp_path))  # this process on the server's database, to add rows
    yield url
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def add_sale(stock: int, starts_in: float = -60) -> int:
    now = utcnow()
    with database.connection_context():
        course = Course.get(Course.name == 'Git in one evening')
        return SeckillItem.create(course=course, price='4.90', stock_total=stock, stock_left=stock,
                                  starts_at=now + datetime.timedelta(seconds=starts_in),
                                  ends_at=now + datetime.timedelta(hours=1)).id


def add_buyers(*names: str) -> None:
    with database.connection_context():
        for name in names:
            User.create(username=name, password_hash=hash_password(PASSWORD))


def sign_in(page: Page, site: str, name: str) -> None:
    page.fill('#login-name', name)
    page.fill('#login-password', PASSWORD)
    page.locator('form[data-panel="password"] button[type=submit]').click()


def result_calls(page: Page) -> list[str]:
    calls: list[str] = []
    page.on('request', lambda request: calls.append(request.url) if '/seckill/result' in request.url else None)
    return calls


def test_press_then_poll_to_the_outcome_and_a_second_buyer_is_told_sold_out(context, browser, site):
    create_tables()
    item = add_sale(stock=1)
    add_buyers('buyer_one', 'buyer_two')
    second_context = browser.new_context(viewport={'width': 390, 'height': 800}, is_mobile=True)
    late = second_context.new_page()
    late.request.post(f'{site}/api/v1/user/login', data=json.dumps({'username': 'buyer_two', 'password': PASSWORD}),
                      headers={'Content-Type': 'application/json'})
    late.goto(f'{site}/seckill/{item}')  # open before the sale is over: the button is live
    expect(late.locator('[data-press]')).to_be_enabled()
    late.route('**/api/v1/seckill/items/*', lambda route: route.abort())  # its stock stays unrefreshed

    page = context.new_page()
    calls = result_calls(page)
    page.goto(f'{site}/seckill/{item}')
    expect(page.locator('h1')).to_have_text('Git in one evening')
    expect(page.locator('[data-countdown]')).to_have_text('On sale now')
    shot(page, 'seckill-before')
    page.click('[data-press]')  # signed out: off to sign in, and back
    page.wait_for_url(f'{site}/login?next=/seckill/{item}')
    sign_in(page, site, 'buyer_one')
    page.wait_for_url(f'{site}/seckill/{item}')
    page.click('[data-press]')
    expect(page.locator('[data-press]')).to_be_disabled()
    expect(page.locator('[data-outcome]')).to_contain_text('Queued')
    expect(page.locator('[data-outcome]')).to_contain_text('You got it! Order #', timeout=15_000)
    shot(page, 'seckill-won')
    polls = len(calls)
    assert polls >= 1
    page.wait_for_timeout(2500)  # more than two poll intervals
    assert len(calls) == polls  # a terminal answer stopped the polling
    page.click('[data-pay]')
    expect(page.locator('[data-outcome]')).to_contain_text('Paid')

    late.click('[data-press]')
    expect(late.locator('[data-outcome]')).to_have_text('sold out')  # at once: no polling
    shot(late, 'seckill-sold-out-phone')
    late.unroute('**/api/v1/seckill/items/*')
    expect(late.locator('[data-press]')).to_have_text('Sold out', timeout=5000)  # the next refresh
    second_context.close()


def test_a_sale_not_started_counts_down_with_the_button_off(context, site):
    create_tables()
    item = add_sale(stock=5, starts_in=3 * 3600 + 65)
    page = context.new_page()
    page.goto(f'{site}/seckill/{item}')
    expect(page.locator('[data-countdown]')).to_have_text(re.compile(r'^Starts in 03:0[01]:\d\d$'))
    expect(page.locator('[data-press]')).to_be_disabled()
    shot(page, 'seckill-countdown')
    with urllib.request.urlopen(f'{site}/api/v1/seckill/items/{item}') as reply:
        assert json.loads(reply.read())['result']['state'] == 'upcoming'


def test_network_errors_while_polling_are_retried_then_reported(context, site):
    create_tables()
    item = add_sale(stock=5)
    add_buyers('buyer_three')
    page = context.new_page()
    page.goto(f'{site}/login?next=/seckill/{item}')
    sign_in(page, site, 'buyer_three')
    page.wait_for_url(f'{site}/seckill/{item}')
    page.route('**/api/v1/seckill/result*', lambda route: route.abort())  # the network drops every poll
    page.click('[data-press]')
    expect(page.locator('[data-outcome]')).to_contain_text('Connection trouble, retrying (1/3)')
    expect(page.locator('[data-outcome]')).to_contain_text('We lost the connection', timeout=10_000)
    shot(page, 'seckill-network-error')
