"""Pages in headless Chromium (Debian's package, driven by Playwright); screenshots in tests/artifacts/."""
import os

import pytest
from conftest import ARTIFACTS, CHROMIUM, free_port, process_env, python, unavailable, wait_http

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='module')
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f'{CHROMIUM} missing (apt-get install chromium)')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(spawn, tmp_path) -> str:
    port = free_port()
    server = spawn(python('app.py', '--port', str(port)), process_env(tmp_path), 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    return f'http://127.0.0.1:{port}'


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={'width': 1100, 'height': 700})
    yield context.new_page()
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f'{name}.png'), full_page=True)


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
