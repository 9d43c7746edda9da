"""The operator's console in headless Chromium, against `python app.py` with its embedded consumer:
an editor and an admin run the shop from the browser, and what they do shows on the shop's pages
at once. Screenshots at desktop and phone widths go to tests/artifacts/console-*.png."""
import datetime
import io
import re
import subprocess

import pytest
from conftest import make_settings, process_env, python, shot, start_site
from PIL import Image
from playwright.sync_api import Page, expect

import tasks
from models import Order, SeckillItem, User, database
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR
from sprig.shop.accounts import hash_password

PASSWORDS = {'admin_1': 'admin password 1', 'editor_1': 'editor password 1', 'buyer_01': 'buyer password 1'}
PHONE = {'width': 390, 'height': 844}


@pytest.fixture
def site(spawn, tmp_path):
    url = start_site(spawn, tmp_path)
    for name, role in (('admin_1', 'admin'), ('editor_1', 'editor')):
        made = subprocess.run(python('app.py', 'create-admin', name, '--password-stdin', '--role', role),
                              input=PASSWORDS[name] + '\n', env=process_env(tmp_path), cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=30)
        assert made.returncode == 0 and f'{role} {name} created' in made.stdout, made.stderr
    tasks.configure(make_settings(tmp_path))  # this process reads the site's database
    create_tables()
    with database.connection_context():
        User.create(username='buyer_01', mobile='13800138009', password_hash=hash_password(PASSWORDS['buyer_01']))
    yield url
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def signed_in(browser, site: str, name: str, viewport: dict | None = None) -> Page:
    """A page of a new browser whose cookie signs name in; confirmations are accepted."""
    context = browser.new_context(viewport=viewport or {'width': 1200, 'height': 800}, is_mobile=bool(viewport))
    page = context.new_page()
    assert page.request.post(site + '/api/v1/user/login', data={'username': name, 'password': PASSWORDS[name]}).ok
    page.on('dialog', lambda dialog: dialog.accept())
    return page


def png(path, colour=(200, 30, 60)) -> str:
    buffer = io.BytesIO()
    Image.new('RGB', (1200, 400), colour).save(buffer, 'PNG')
    path.write_bytes(buffer.getvalue())
    return str(path)


def save(page: Page, label: str = 'Create') -> None:
    page.get_by_role('button', name=label, exact=True).click()


def test_an_editor_uploads_a_banner_and_it_is_on_the_home_page_at_once(browser, site, tmp_path):
    page = signed_in(browser, site, 'editor_1')
    page.goto(site + '/')
    page.get_by_role('link', name='Admin').click()
    expect(page.locator('h1')).to_have_text('Today')
    expect(page.locator('[data-figure]')).to_have_count(0)  # revenue is for admins
    page.locator('.console-nav').get_by_role('link', name='Banners').click()
    page.get_by_role('link', name='Add a banner').click()
    save(page)  # empty: the API's errors land next to their fields
    expect(page.locator('.field-error[data-for="title"]')).to_have_text('required')
    page.fill('#title', 'Winter school opens')
    page.set_input_files('input[data-upload-for="image"]', png(tmp_path / 'winter.png'))
    expect(page.locator('#image')).to_have_value(re.compile(r'^/uploads/[A-Za-z0-9_-]{24}\.png$'))
    page.fill('#orders', '-5')
    shot(page, 'console-banner-form')
    save(page)
    page.wait_for_url(re.compile(r'/admin/banners/\d+\?saved=1$'))
    expect(page.locator('.form-status')).to_have_text('Saved.')
    image = page.locator('#image').input_value()
    page.goto(site + '/')
    first = page.locator('.slide').first
    expect(first.locator('h2')).to_have_text('Winter school opens')
    assert first.locator('img').get_attribute('src').endswith(image)
    assert page.request.get(site + image).headers['cache-control'].startswith('public, max-age=')

    page.goto(site + '/admin/banners?q=winter')
    expect(page.locator('.admin-list tbody tr')).to_have_count(1)
    page.check('.admin-list tbody input[name=ids]')
    page.select_option('select[name=action]', 'hide')
    page.get_by_role('button', name='Apply').click()
    expect(page.locator('.admin-list tbody tr td').nth(5)).to_have_text('no')
    page.goto(site + '/')
    expect(page.locator('.slide h2', has_text='Winter school opens')).to_have_count(0)
    page.set_viewport_size(PHONE)
    page.goto(site + '/admin/banners')
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')
    shot(page, 'console-banners-phone')


def test_an_editor_builds_a_course_with_chapters_and_sections(browser, site):
    page = signed_in(browser, site, 'editor_1')
    page.goto(site + '/admin/courses/new')
    page.fill('#name', 'Rust for Pythonistas')
    page.select_option('#kind', 'light')
    page.fill('#price', '19.9')
    page.select_option('#teacher', index=1)
    page.fill('#pub_sections', '5')  # more published than planned: refused next to the field
    save(page)
    expect(page.locator('.form-status')).to_contain_text('pub_sections cannot exceed sections')
    page.fill('#sections', '8')
    save(page)
    page.wait_for_url(re.compile(r'/admin/courses/\d+\?saved=1$'))
    course_id = int(page.url.split('/')[-1].split('?')[0])
    for name in ('Ownership', 'Traits'):
        page.locator('details.add-part', has_text='Add a chapter').locator('summary').click()
        page.locator('[id="new-ch-name"]').fill(name)
        page.get_by_role('button', name='Add chapter').click()
        expect(page.locator('.chapter')).to_have_count(1 if name == 'Ownership' else 2)
    for chapter, name in ((0, 'Borrowing'), (0, 'Lifetimes'), (1, 'Generics')):
        box = page.locator('.chapter').nth(chapter)
        box.locator('details.add-part summary').click()
        box.locator('details.add-part [name=name]').fill(name)
        box.locator('details.add-part [name=section_link]').fill('https://video.example/' + name.lower())
        box.get_by_role('button', name='Add section').click()
        expect(page.locator(f'.parts li [name=name][value="{name}"]')).to_have_count(1)
    expect(page.locator('.parts li')).to_have_count(3)
    lifetimes = page.locator('.parts li').nth(1)  # goes before Borrowing
    lifetimes.locator('[name=orders]').fill('-1')
    lifetimes.get_by_role('button', name='Save section').click()
    expect(page.locator('.parts li').first.locator('[name=name]')).to_have_value('Lifetimes')
    shot(page, 'console-course')
    page.goto(site + '/courses/light')
    expect(page.locator(f'a[href="/course/{course_id}"]').first).to_be_visible()
    page.goto(f'{site}/course/{course_id}')
    expect(page.locator('body')).to_contain_text('Lifetimes')
    text = page.locator('body').inner_text()
    assert text.index('Ownership') < text.index('Lifetimes') < text.index('Borrowing') < text.index('Traits')


def test_a_sale_made_in_the_console_is_pressed_and_its_cancelled_order_gives_the_unit_back(browser, site):
    editor = signed_in(browser, site, 'editor_1')
    editor.goto(site + '/admin/sales/new')
    now = datetime.datetime.now(datetime.UTC)
    editor.select_option('#course_id', index=1)
    editor.fill('#price', '1.00')
    editor.fill('#stock_total', '3')
    editor.fill('#starts_at', (now - datetime.timedelta(minutes=2)).strftime('%Y-%m-%dT%H:%M'))
    editor.fill('#ends_at', (now - datetime.timedelta(minutes=3)).strftime('%Y-%m-%dT%H:%M'))
    save(editor)
    expect(editor.locator('.form-status')).to_contain_text('ends_at must come after starts_at')
    editor.fill('#ends_at', (now + datetime.timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M'))
    save(editor)
    editor.wait_for_url(re.compile(r'/admin/sales/\d+\?saved=1$'))
    sale_id = int(editor.url.split('/')[-1].split('?')[0])
    expect(editor.locator('.sale-stock strong')).to_have_text('3')

    buyer = signed_in(browser, site, 'buyer_01')
    buyer.goto(f'{site}/seckill/{sale_id}')
    buyer.locator('[data-press]').click()
    expect(buyer.locator('[data-outcome].won')).to_contain_text('this seat is yours', timeout=15_000)
    with database.connection_context():
        order = Order.get(Order.item == sale_id)
        assert SeckillItem.get_by_id(sale_id).stock_left == 2

    admin = signed_in(browser, site, 'admin_1')
    chart = admin.request.get(site + '/admin/charts/presses.svg').text()  # the dashboard's press chart
    assert f'sale #{sale_id}' in chart and '<title>1 won</title>' in chart
    admin.goto(site + '/admin')
    expect(admin.locator(f'[data-stock="{sale_id}"]')).to_have_text('2')
    expect(admin.locator('[data-figure="orders"]')).to_have_text('1')
    admin.goto(f'{site}/admin/orders?status=pending_payment')
    admin.get_by_role('link', name=str(order.id), exact=True).click()
    expect(admin.locator('.data tbody')).to_contain_text('create_order')  # its task history
    admin.get_by_role('button', name='Cancel order').click()
    expect(admin.locator('[data-status]')).to_have_text('cancelled')
    expect(admin.locator('.data').last).to_contain_text('admin_1')  # the audit
    admin.goto(f'{site}/admin/sales/{sale_id}')
    expect(admin.locator('.sale-stock strong')).to_have_text('3')
    shot(admin, 'console-sale')
    admin.set_viewport_size(PHONE)
    admin.goto(site + '/admin')
    assert admin.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')
    shot(admin, 'console-home-phone')


def test_an_admin_disables_a_user_and_the_editor_may_not(browser, site):
    token = browser.new_context().request.post(site + '/api/v1/user/login', data={
        'username': 'buyer_01', 'password': PASSWORDS['buyer_01']}).json()['token']
    me = {'Authorization': f'Bearer {token}'}
    outsider = browser.new_context()
    assert outsider.request.get(site + '/api/v1/user/me', headers=me).status == 200

    editor = signed_in(browser, site, 'editor_1')
    assert editor.goto(site + '/admin/users').status == 403
    expect(editor.locator('.error-msg')).to_have_text('admins only')
    editor.goto(site + '/admin')
    expect(editor.locator('.console-nav a', has_text='Users')).to_have_count(0)

    admin = signed_in(browser, site, 'admin_1', PHONE)
    admin.goto(site + '/admin/users?q=buyer')
    admin.get_by_role('link', name=re.compile('^\\d+$')).first.click()
    expect(admin.locator('h1')).to_have_text('buyer_01')
    button = admin.get_by_role('button', name='Disable account')
    button.scroll_into_view_if_needed()
    assert admin.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')
    shot(admin, 'console-user-phone')
    button.click()
    expect(admin.locator('[data-active]')).to_have_text('disabled')
    assert outsider.request.get(site + '/api/v1/user/me', headers=me).status == 401
    admin.select_option('#role', 'editor')
    admin.get_by_role('button', name='Save role').click()
    expect(admin.locator('td.changes').first).to_contain_text('role')  # the page came back with it
    expect(admin.locator('#role')).to_have_value('editor')
    admin.goto(site + '/admin/audit')
    expect(admin.locator('.admin-list tbody tr')).to_have_count(2)
    expect(admin.locator('.admin-list tbody')).to_contain_text('disable')
