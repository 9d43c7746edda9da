"""Register, sign in and out in headless Chromium, against the real app with its embedded consumer.

SMS codes come from the console backend's outbox file; screenshots go to tests/artifacts/auth-*.png.
"""
import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import make_settings, shot, start_site
from playwright.sync_api import Page, expect

import tasks
from models import User, database
from sprig.shop.accounts import hash_password

MOBILE = '13800138000'
USERNAME = 'sprig_user1'
PASSWORD = 'correct horse 42'
RESEND = 4  # [sms] resend_interval of the server under test, in seconds (a loaded machine takes 2 s to answer)


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / 'outbox.jsonl'


@pytest.fixture
def site(spawn, tmp_path: Path, outbox: Path) -> str:
    return start_site(spawn, tmp_path, SPRIG_SMS_OUTBOX=str(outbox), SPRIG_SMS_RESEND_INTERVAL=str(RESEND))


def outbox_lines(outbox: Path) -> list[dict]:
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text(encoding='utf-8').splitlines() if line.strip()]


def sent_code(outbox: Path, mobile: str, scene: str, after: int, timeout: float = 10) -> str:
    """The code of the newest message to mobile for scene among those past the first `after` lines;
    the background task writes it, so wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [m for m in outbox_lines(outbox)[after:] if m['mobile'] == mobile and m['scene'] == scene]
        if fresh:
            return fresh[-1]['code']
        time.sleep(0.1)
    pytest.fail(f'no {scene} code for {mobile} in {outbox} within {timeout} s: {outbox_lines(outbox)}')


def error_for(page: Page, name: str):
    return page.locator(f'form:visible .field-error[data-for="{name}"]')


def expect_signed_in(page: Page, site: str, username: str, path: str = '/') -> None:
    page.wait_for_url(site + path)
    expect(page.locator('.account .who')).to_have_text(f'Signed in as {username}')
    expect(page.locator('[data-logout]')).to_be_visible()
    expect(page.locator('.account a[href="/login"]')).to_have_count(0)


def sign_out(page: Page, site: str) -> None:
    page.locator('[data-logout]').click()
    page.wait_for_url(site + '/')
    expect(page.locator('.account a[href="/login"]')).to_have_text('Sign in')
    expect(page.locator('.account a[href="/register"]')).to_have_text('Register')
    expect(page.locator('.account .who')).to_have_count(0)


def test_register_sign_out_and_sign_in_both_ways(context, site, outbox):
    page = context.new_page()

    # 1. Bad input: every error next to its field, the fields marked invalid.
    page.goto(site + '/register')
    assert page.title() == 'Register · Sprig'
    page.fill('#reg-username', 'ab')
    page.fill('#reg-password', PASSWORD)
    page.fill('#reg-password2', PASSWORD + 'x')
    page.locator('main form button[type=submit]').click()
    expect(error_for(page, 'username')).to_have_text('must be 5-20 letters, digits or underscores')
    expect(error_for(page, 'password2')).to_have_text('the two passwords differ')
    expect(error_for(page, 'allow')).to_have_text('accept the terms to register')
    expect(error_for(page, 'mobile')).to_have_text('must be an 11-digit mobile number starting with 13 to 19')
    expect(error_for(page, 'sms_code')).to_have_text('must be the 6 digits you received')
    expect(error_for(page, 'password')).to_be_hidden()  # valid: its slot stays empty
    expect(error_for(page, 'email')).to_be_hidden()  # optional and left empty
    expect(page.locator('#reg-username')).to_have_attribute('aria-invalid', 'true')
    expect(page.locator('#reg-password2')).to_have_attribute('aria-invalid', 'true')
    expect(page.locator('#reg-password')).not_to_have_attribute('aria-invalid', 'true')
    expect(page.locator('main form button[type=submit]')).to_be_enabled()
    # Each message sits right under its own field.
    for field, name in [('#reg-username', 'username'), ('#reg-password2', 'password2')]:
        field_box, error_box = page.locator(field).bounding_box(), error_for(page, name).bounding_box()
        assert 0 <= error_box['y'] - (field_box['y'] + field_box['height']) < 60, (name, field_box, error_box)
    shot(page, 'auth-register-errors')

    # 2. A code by SMS, the countdown, then a valid registration lands on / signed in.
    page.fill('#reg-username', USERNAME)
    page.fill('#reg-mobile', MOBILE)
    send = page.locator('button[data-send-code="register"]')
    expect(send).to_have_text('Send code')
    seen = len(outbox_lines(outbox))
    send.click()
    expect(send).to_have_text(re.compile(r'^Resend in [0-9]+ s$'))
    expect(send).to_be_disabled()
    expect(page.locator('form .form-status')).to_have_text('Code sent. It is valid for a few minutes.')
    expect(error_for(page, 'username')).to_be_hidden()  # the earlier errors are cleared
    shot(page, 'auth-register-countdown')
    code = sent_code(outbox, MOBILE, 'register', seen)
    # The countdown ends: the button can be pressed again (and the resend interval has passed).
    expect(send).to_have_text('Send code', timeout=(RESEND + 5) * 1000)
    expect(send).to_be_enabled()
    page.fill('#reg-code', code)
    page.fill('#reg-password2', PASSWORD)
    page.check('input[name=allow]')
    page.locator('main form button[type=submit]').click()
    expect_signed_in(page, site, USERNAME)
    shot(page, 'auth-registered-home')

    # 3. The login cookie: HttpOnly, SameSite=Lax, invisible to the page's scripts.
    cookies = {c['name']: c for c in context.cookies(site)}
    assert 'sprig_token' in cookies, cookies
    token = cookies['sprig_token']
    assert token['httpOnly'] is True
    assert token['sameSite'] == 'Lax'
    assert token['path'] == '/'
    assert token['value'] and token['value'] not in page.evaluate('document.cookie')
    assert 'sprig_token' not in page.evaluate('document.cookie')

    # 4. Signing out from the header: back on /, signed out, the cookie gone.
    sign_out(page, site)
    assert 'sprig_token' not in {c['name'] for c in context.cookies(site)}

    # 5. Password tab: a wrong password gets the generic message, then the mobile number signs in.
    page.goto(site + '/login')
    assert page.title() == 'Sign in · Sprig'
    expect(page.locator('[data-tab="password"]')).to_have_class(re.compile(r'\bactive\b'))
    password_form = page.locator('form[data-panel="password"]')
    page.fill('#login-name', MOBILE)
    page.fill('#login-password', PASSWORD + '!')
    password_form.locator('button[type=submit]').click()
    expect(password_form.locator('.form-status')).to_have_text('wrong username or password')
    assert page.url == site + '/login'
    expect(password_form.locator('button[type=submit]')).to_be_enabled()
    page.fill('#login-password', PASSWORD)
    shot(page, 'auth-login-password')
    password_form.locator('button[type=submit]').click()
    expect_signed_in(page, site, USERNAME)
    # Signed in, the login page sends you on.
    page.goto(site + '/login')
    expect_signed_in(page, site, USERNAME)
    sign_out(page, site)

    # 6. SMS tab: a login code from the outbox signs in, and the page goes on to ?next=.
    page.goto(site + '/login?next=' + quote('/?from=sms'))
    page.locator('[data-tab="sms"]').click()
    sms_form = page.locator('form[data-panel="sms"]')
    expect(sms_form).to_be_visible()
    expect(page.locator('[data-tab="sms"]')).to_have_class(re.compile(r'\bactive\b'))
    page.fill('#sms-mobile', MOBILE)
    send = page.locator('button[data-send-code="login"]')
    seen = len(outbox_lines(outbox))
    send.click()
    expect(sms_form.locator('.form-status')).to_have_text('Code sent. It is valid for a few minutes.')
    expect(send).to_be_disabled()
    code = sent_code(outbox, MOBILE, 'login', seen)
    page.fill('#sms-code', code)
    shot(page, 'auth-login-sms')
    sms_form.locator('button[type=submit]').click()
    expect_signed_in(page, site, USERNAME, '/?from=sms')
    page.close()


def test_login_tabs_show_one_form_at_a_time(context, site):
    page = context.new_page()
    page.goto(site + '/login')
    password_form = page.locator('form[data-panel="password"]')
    sms_form = page.locator('form[data-panel="sms"]')
    try:
        expect(password_form).to_be_visible()
        expect(sms_form).to_be_hidden(timeout=1000)
        page.locator('[data-tab="sms"]').click()
        expect(sms_form).to_be_visible()
        expect(password_form).to_be_hidden(timeout=1000)
        page.locator('[data-tab="password"]').click()
        expect(password_form).to_be_visible()
        expect(sms_form).to_be_hidden(timeout=1000)
    finally:
        shot(page, 'auth-login-tabs')
        page.close()


def test_code_row_fits_a_phone_screen(browser, site):
    context = browser.new_context(viewport={'width': 360, 'height': 700})
    page = context.new_page()
    try:
        page.goto(site + '/register')
        card = page.locator('.auth-card').bounding_box()
        button = page.locator('button[data-send-code="register"]').bounding_box()
        assert button['x'] + button['width'] <= card['x'] + card['width'], (button, card)
        assert page.evaluate('document.documentElement.scrollWidth') <= 360
    finally:
        shot(page, 'auth-register-phone')
        context.close()


def test_a_forgotten_password_is_reset_with_an_sms_code(context, site, outbox, tmp_path):
    tasks.configure(make_settings(tmp_path))  # the site's database
    with database.connection_context():
        User.create(username='forgetful1', mobile='13800138011', password_hash=hash_password('long forgotten 1'))
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))
    page = context.new_page()
    page.goto(site + '/login')
    page.get_by_role('link', name='Forgot your password?').click()
    expect(page.locator('h1')).to_have_text('Reset your password')
    page.fill('#reset-mobile', '13800138011')
    seen = len(outbox_lines(outbox))
    page.locator('button[data-send-code="reset"]').click()
    code = sent_code(outbox, '13800138011', 'reset', seen)
    page.fill('#reset-code', code)
    page.fill('#reset-password', 'brand new pass 1')
    page.fill('#reset-password2', 'brand new pass 2')
    page.locator('main form button[type=submit]').click()
    expect(error_for(page, 'new_password2')).to_have_text('the two passwords differ')
    shot(page, 'auth-password-reset')
    page.fill('#reset-password2', 'brand new pass 1')
    page.locator('main form button[type=submit]').click()
    page.wait_for_url(site + '/login?reset=1')
    expect(page.locator('main .form-status.ok')).to_have_text('Password changed: sign in with it.')
    page.fill('#login-name', 'forgetful1')
    page.fill('#login-password', 'brand new pass 1')
    page.locator('form[data-panel="password"] button[type=submit]').click()
    expect_signed_in(page, site, 'forgetful1')
