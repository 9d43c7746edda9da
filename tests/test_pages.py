"""Pages in headless Chromium (Debian's package, driven by Playwright); screenshots in tests/artifacts/."""
import pytest
from conftest import shot, start_site


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
