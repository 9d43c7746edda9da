"""The buyer's side in headless Chromium against `python app.py`, at desktop (1280x800) and phone
(390x844) widths: win a seat, leave, pay it from My orders; the winner of a 1-seat sale never sees
"Sold out"; buy a paid course and start a free one; a failed SMS shown as failed; images on
another port with no base_url."""
import pytest
from conftest import free_port, make_settings, process_env, python, shot, start_site, wait_http
from playwright.sync_api import Page, expect
from test_pages_seckill import add_buyers, add_sale, sign_in

import tasks
from sprig.db.schema import create_tables

SIZES = {'desktop': {'width': 1280, 'height': 800}, 'phone': {'width': 390, 'height': 844}}


@pytest.fixture(params=list(SIZES))
def page(request, browser) -> Page:
    context = browser.new_context(viewport=SIZES[request.param], is_mobile=request.param == 'phone')
    yield context.new_page()
    context.close()


@pytest.fixture
def site(spawn, tmp_path):
    url = start_site(spawn, tmp_path, SPRIG_SECKILL_POLL_INTERVAL='1')
    tasks.configure(make_settings(tmp_path))  # this process on the server's database, to add rows
    create_tables()
    yield url
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def signed_in(page: Page, site: str, name: str, then: str) -> None:
    add_buyers(name)
    page.goto(f'{site}/login?next={then}')
    sign_in(page, site, name)
    page.wait_for_url(f'{site}{then}')


def test_a_seat_won_is_paid_later_from_my_orders_and_never_shown_sold_out(page, site, request):
    size = request.node.callspec.params['page']
    item = add_sale(stock=1)
    signed_in(page, site, f'winner_{size}', f'/seckill/{item}')
    page.click('[data-press]')
    expect(page.locator('[data-outcome]')).to_contain_text('You got it! Order #', timeout=15_000)
    expect(page.locator('[data-press]')).to_be_hidden()  # the stock says sold out; the button is not theirs to say it
    expect(page.locator('[data-stock-state]')).to_have_text('sold out', timeout=5000)
    page.goto(f'{site}/')  # leave
    page.goto(f'{site}/seckill/{item}')  # and come back: the page knows the seat is theirs
    expect(page.locator('[data-outcome]')).to_contain_text('this seat is yours')
    expect(page.locator('[data-press]')).to_be_hidden()
    expect(page.locator('[data-pay]')).to_be_visible()
    page.click('text=My orders')
    expect(page.locator('.order [data-expires]')).to_contain_text('left')
    shot(page, f'buyer-my-orders-{size}')
    page.click('.order [data-checkout]')
    expect(page.locator('.simulated-provider')).to_contain_text('no money moves')
    shot(page, f'buyer-simulated-checkout-{size}')
    page.click('[data-simulated-pay]')
    page.wait_for_url(f'{site}/pay/return?order=*')
    expect(page.locator('h1')).to_have_text('Thank you')
    page.goto(f'{site}/seckill/{item}')
    expect(page.locator('[data-outcome]')).to_contain_text('Paid')
    expect(page.locator('[data-press]')).to_be_hidden()
    page.goto(f'{site}/my/courses')
    expect(page.locator('.my-courses')).to_contain_text('Git in one evening')


def test_a_paid_course_is_bought_and_a_free_one_started(page, site, request):
    size = request.node.callspec.params['page']
    signed_in(page, site, f'student_{size}', '/course/5')
    page.click('[data-buy]')
    expect(page.locator('.simulated-provider h1')).to_have_text('Pay ¥399.00')
    page.click('[data-simulated-pay]')
    expect(page.locator('h1')).to_have_text('Thank you')
    page.goto(f'{site}/course/5')
    expect(page.locator('.owned')).to_contain_text('This course is yours')
    page.goto(f'{site}/course/1')
    page.click('[data-start]')
    page.wait_for_url(f'{site}/my/courses')
    expect(page.locator('.my-courses li')).to_have_count(2)
    shot(page, f'buyer-my-courses-{size}')
    page.goto(f'{site}/account')
    shot(page, f'buyer-account-{size}')
    page.goto(f'{site}/')
    expect(page.locator('[aria-label="Most popular courses"] .course-card')).to_have_count(4)
    page.fill('#search-words', 'linux')
    page.press('#search-words', 'Enter')
    expect(page.locator('.course-card').first).to_be_visible()
    shot(page, f'buyer-search-{size}')


def test_a_code_that_could_not_be_sent_is_shown_as_failed(browser, spawn, tmp_path):
    keys = {f'SPRIG_SMS_TENCENT_{key}': 'x' for key in ('SECRET_ID', 'SECRET_KEY', 'APP_ID', 'SIGN_NAME',
                                                          'TEMPLATE_ID')}
    site = start_site(spawn, tmp_path, SPRIG_SMS_BACKEND='tencent', SPRIG_SMS_SEND_RETRIES='0',
                      SPRIG_SMS_TENCENT_ENDPOINT=f'http://127.0.0.1:{free_port()}', **keys)
    context = browser.new_context(viewport=SIZES['desktop'])
    page = context.new_page()
    page.goto(f'{site}/register')
    page.fill('#reg-mobile', '13800138000')
    page.click('[data-send-code]')
    expect(page.locator('.field-error[data-for="sms_code"]')).to_have_text(
        'We could not send the code. Please try again.', timeout=15_000)
    expect(page.locator('[data-send-code]')).to_be_enabled()
    shot(page, 'register-sms-failed')
    context.close()


def test_images_load_on_another_port_with_no_base_url(browser, spawn, tmp_path):
    port = 18123  # the port the issue names
    server = spawn(python('app.py', '--port', str(port)), process_env(tmp_path), 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    context = browser.new_context(viewport=SIZES['desktop'])
    page = context.new_page()
    page.goto(f'http://127.0.0.1:{port}/')
    images = page.locator('.slide img')
    expect(images.first).to_be_visible()
    loaded = page.evaluate('[...document.images].every(image => image.complete && image.naturalWidth > 0)')
    assert loaded and f':{port}/static/' in images.first.get_attribute('src')
    shot(page, 'home-on-port-18123')
    context.close()
