"""Pages in headless Chromium (Debian's package, driven by Playwright); screenshots in tests/artifacts/."""
import json
import subprocess
import urllib.request

import pytest
from conftest import process_env, python, shot, start_site, wait_js

from sprig.settings import PROJECT_DIR


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture
def site(spawn, tmp_path) -> str:
    return start_site(spawn, tmp_path)


@pytest.fixture
def page(context):
    return context.new_page()


def test_home_page_renders_with_its_stylesheet(page, site):
    page.goto(site + '/')
    assert page.title() == 'Home · Sprig'
    assert page.locator('.brand').inner_text() == 'Sprig'
    # The stylesheet loaded: the header is white on the page's light grey.
    background = page.eval_on_selector('.site-header', 'e => getComputedStyle(e).backgroundColor')
    assert background == 'rgb(255, 255, 255)'
    shot(page, 'foundation-home')


def test_unknown_page_is_a_friendly_html_404(page, site):
    reply = page.goto(site + '/no/such/page')
    assert reply.status == 404
    assert page.locator('h1').inner_text() == '404 Not Found'
    assert 'not found: /no/such/page' in page.locator('.error-msg').inner_text()
    shot(page, 'foundation-404')


def test_home_carousel_advances_by_itself_by_arrows_and_by_dots(page, site):
    refused = []
    page.on('console', lambda message: refused.append(message.text) if 'Content Security Policy' in message.text
            else None)
    page.goto(site + '/')  # `python app.py` seeded the demo banners
    slides = page.locator('.carousel .slide')
    assert slides.count() == 3
    assert page.locator('.slide.active h2').inner_text() == 'Python from zero to web'
    # Every image came from static/ through [app] base_url.
    wait_js(page, "[...document.querySelectorAll('.slide img')].every(i => i.complete && i.naturalWidth > 0)")
    shot(page, 'banners-home')
    page.click('[data-next]')
    assert page.locator('.slide.active h2').inner_text() == 'Flash sale: Linux for developers'
    page.click('[data-dot="2"]')
    assert page.locator('.slide.active h2').inner_text() == 'Light courses, one evening each'
    assert page.locator('.dot.active').get_attribute('aria-label').startswith('Show slide 3')
    page.click('[data-prev]')
    assert page.get_attribute('[data-carousel]', 'data-current') == '1'
    page.mouse.move(0, 0)  # away from the carousel, which pauses while pointed at
    wait_js(page, "document.querySelector('[data-carousel]').dataset.current === '2'", timeout=8)
    assert page.locator('.slide.active a').get_attribute('href') == '/courses/light'
    assert refused == []  # the page's scripts, styles and images all pass its CSP
    page.set_viewport_size({'width': 390, 'height': 800})
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    page.hover('.carousel')  # paused, and past its 0.6 s cross-fade before the picture
    page.wait_for_timeout(700)
    shot(page, 'banners-home-phone')


def test_home_without_banners_shows_a_placeholder_and_fits_a_phone(browser, spawn, tmp_path):
    site = start_site(spawn, tmp_path)
    admin = subprocess.run(python('app.py', 'create-admin', 'admin_1', '--password-stdin'), input='admin password 1\n',
                           env=process_env(tmp_path), cwd=PROJECT_DIR, capture_output=True, text=True)
    assert admin.returncode == 0, admin.stderr
    token = post_json(site + '/api/v1/user/login', {'username': 'admin_1', 'password': 'admin password 1'})['token']
    for banner_id in (1, 2, 3):
        request = urllib.request.Request(f'{site}/api/v1/admin/banners/{banner_id}', method='DELETE',
                                         headers={'Authorization': f'Bearer {token}'})
        urllib.request.urlopen(request, timeout=5).close()
    phone = browser.new_context(viewport={'width': 390, 'height': 800}, is_mobile=True)
    page = phone.new_page()
    page.goto(site + '/')
    assert page.locator('.carousel').count() == 0
    assert page.locator('.carousel-empty h2').inner_text() == 'Welcome to Sprig'
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')  # nothing sticks out
    shot(page, 'banners-home-empty-phone')
    phone.close()
