"""The admin task dashboard in headless Chromium, against the real app with its embedded consumer.

The server imports tests/testtasks.py as well: its consumer runs the test tasks and its retry
endpoint knows them. This process enqueues them on the same queue and database (same data
directory). Screenshots go to tests/artifacts/dashboard-*.png.
"""
import re
import subprocess

import pytest
import testtasks
from conftest import free_port, make_settings, process_env, python, shot, wait_http
from playwright.sync_api import Page, expect

import tasks
from models import TaskRecord, User, database
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR
from sprig.shop.accounts import hash_password

ADMIN, ADMIN_PASSWORD = 'admin_1', 'admin password 1'
MEMBER, MEMBER_PASSWORD = 'member_1', 'member password 1'
SOON = 15_000  # ms: several refreshes of the page (every 3 s), with a task run in between


@pytest.fixture
def site(spawn, tmp_path):
    env = process_env(tmp_path, PYTHONPATH=str(PROJECT_DIR / 'tests'), TESTTASKS_DIR=str(tmp_path))
    port = free_port()
    code = f'import sys, testtasks, sprig.cli; sys.exit(sprig.cli.main(["--port", "{port}"]))'
    server = spawn(python('-c', code), env, 'server')
    wait_http(f'http://127.0.0.1:{port}/api/v1/health', server)
    admin = subprocess.run(python('app.py', 'create-admin', ADMIN, '--password-stdin'), input=f'{ADMIN_PASSWORD}\n',
                           env=env, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30)
    assert admin.returncode == 0, admin.stderr
    yield f'http://127.0.0.1:{port}'
    server.stop()  # Ctrl-C, so that its consumer stops cleanly


@pytest.fixture
def shared(site, tmp_path):
    """This process on the server's queue and database, instead of the suite's immediate mode."""
    tasks.configure(make_settings(tmp_path))
    create_tables()
    yield
    tasks.configure(make_settings(tmp_path, SPRIG_QUEUE_IMMEDIATE='true'))


def sign_in(page: Page, site: str, username: str, password: str, landing: str) -> None:
    """Fill in the sign-in form the page is on; wait for the page it goes on to."""
    page.fill('#login-name', username)
    page.fill('#login-password', password)
    page.locator('form[data-panel="password"] button[type=submit]').click()
    page.wait_for_url(site + landing)


def test_the_dashboard_is_for_admins_only(context, site, shared):
    with database.connection_context():
        User.create(username=MEMBER, password_hash=hash_password(MEMBER_PASSWORD))
    page = context.new_page()
    page.goto(site + '/admin/tasks?state=failed')
    assert page.url == site + '/login?next=/admin/tasks%3Fstate%3Dfailed'  # filters included
    page.goto(site + '/login')
    sign_in(page, site, MEMBER, MEMBER_PASSWORD, '/')
    expect(page.locator('.nav a[href="/admin"]')).to_have_count(0)  # no link to the console

    reply = page.goto(site + '/admin/tasks')
    assert reply.status == 403
    expect(page.locator('h1')).to_have_text('403 Forbidden')
    expect(page.locator('.error-msg')).to_have_text('admins only')
    assert page.request.get(site + '/api/v1/admin/tasks').status == 403
    page.close()


def test_an_admin_retries_a_failed_task(context, site, shared):
    with database.connection_context():
        failed = testtasks.fails_once('fails-once-marker')
    page = context.new_page()
    page.goto(site + '/admin/tasks')
    page.wait_for_url(site + '/login?next=/admin/tasks')
    sign_in(page, site, ADMIN, ADMIN_PASSWORD, '/admin/tasks')
    assert page.title() == 'Tasks · Sprig'
    expect(page.locator('.console-nav a[href="/admin/tasks"]')).to_have_text('Tasks')

    # The failed run, its error, a Retry button; the panels around it filled in.
    row = page.locator(f'[data-body="tasks"] tr[data-id="{failed.id}"]')
    expect(row.locator('.badge')).to_have_text('failed', timeout=SOON)
    expect(row.locator('.error .clip')).to_have_attribute('title', 'RuntimeError: first run fails')
    expect(row.locator('button')).to_have_text(['Retry'])
    note = page.locator('[data-note]')
    expect(note).to_have_text(re.compile(r'^updated \d\d:\d\d:\d\d$'))
    expect(page.locator('[data-body="stats"] tr').filter(has_text='fails_once')).to_contain_text('100 %')
    expect(page.locator('[data-body="schedules"] tr').filter(has_text='tick')).to_contain_text('every 2 s')
    expect(page.locator('[data-body="consumers"] .badge.leader')).to_have_count(1, timeout=SOON)
    shot(page, 'dashboard-failed')

    # A refresh that fails leaves the table as it was and says so; the next good one says so too.
    page.route('**/api/v1/admin/queue', lambda route: route.fulfill(
        status=503, json={'code': 503, 'msg': 'queue unavailable, try again shortly'}))
    expect(note).to_have_text(re.compile(r'^refresh failed at \d\d:\d\d:\d\d: queue unavailable'), timeout=SOON)
    expect(note).to_have_class(re.compile(r'\berror\b'))
    expect(row.locator('.badge')).to_have_text('failed')
    page.unroute('**/api/v1/admin/queue')
    expect(note).to_have_text(re.compile(r'^updated '), timeout=SOON)

    # Only this task's runs, a filter that the address keeps.
    page.fill('input[name="name"]', 'fails_once')
    expect(page).to_have_url(site + '/admin/tasks?name=fails_once')
    expect(page.locator('[data-body="tasks"] tr')).to_have_count(1)

    row.locator('button[data-action="retry"]').click()
    message = page.locator('[data-message]')
    expect(message).to_have_text(re.compile(r'^fails_once queued again as task [0-9a-f-]{36}\.$'))
    retried = message.inner_text().split()[-1].rstrip('.')
    run = page.locator(f'[data-body="tasks"] tr[data-id="{retried}"]')
    expect(run.locator('.badge')).to_have_text('succeeded', timeout=SOON)
    expect(run.locator('button')).to_have_count(0)
    expect(row.locator('.badge')).to_have_text('failed')  # the failed run stays on record
    shot(page, 'dashboard-retried')
    with database.connection_context():
        assert TaskRecord.get_by_id(retried).result == '"second run"'

    # Down to a narrow window: the tables scroll inside their frames, the page does not.
    page.set_viewport_size({'width': 800, 'height': 700})
    page.fill('input[name="name"]', '')
    expect(page).to_have_url(site + '/admin/tasks')
    expect(page.locator('[data-body="tasks"] tr').filter(has_text='tick').first).to_be_visible()
    assert page.evaluate('document.documentElement.scrollWidth') <= 800
    shot(page, 'dashboard-narrow')
    page.close()


def test_a_failed_tasks_page_shows_its_traceback_and_timeline(context, site, shared):
    with database.connection_context():
        failed = testtasks.flaky.s('flaky-detail-marker')
        failed.retries = 0  # no second attempt: the first failure is its end
        tasks.huey.enqueue(failed)
        secret = testtasks.fails_with_secret('hunter2-token')
        testtasks.add(1, 2)
    page = context.new_page()
    page.goto(site + '/login?next=/admin/tasks')
    sign_in(page, site, ADMIN, ADMIN_PASSWORD, '/admin/tasks')
    row = page.locator(f'[data-body="tasks"] tr[data-id="{failed.id}"]')
    expect(row.locator('.badge')).to_have_text('failed', timeout=SOON)
    expect(row.locator('button[data-action="retry"]')).to_have_count(1)
    hidden = page.locator(f'[data-body="tasks"] tr[data-id="{secret.id}"]')
    expect(hidden.locator('.badge')).to_have_text('failed', timeout=SOON)
    expect(hidden.locator('button')).to_have_count(0)  # no Retry: its argument was never kept
    expect(hidden.locator('.no-retry')).to_have_attribute('title', re.compile('deliberately not kept'))

    page.fill('[data-filters] input[name="q"]', failed.id)  # search by the task's id
    expect(page.locator('[data-body="tasks"] tr')).to_have_count(1)
    row.get_by_role('link', name='flaky').click()
    expect(page.locator('h1')).to_have_text('flaky')
    expect(page.locator('[data-traceback]')).to_contain_text('RuntimeError: first attempt fails')
    expect(page.locator('[data-traceback]')).to_contain_text('testtasks.py')
    states = page.locator('[data-timeline] tbody tr td:first-child').all_inner_texts()
    assert states == ['queued', 'started', 'failed'], states
    consumer = page.locator('[data-timeline] tbody tr').nth(1).locator('td').nth(2).inner_text()
    assert consumer.count(':') == 2  # host:pid:nonce of the consumer that ran it
    expect(page.get_by_role('button', name='Retry')).to_have_count(1)
    shot(page, 'dashboard-task-failed')

    page.goto(f'{site}/admin/tasks/{secret.id}')
    expect(page.locator('dd.code').nth(1)).to_have_text('{"token": "***"}')
    expect(page.locator('[data-no-retry]')).to_contain_text('its arguments are deliberately not kept')
    expect(page.get_by_role('button', name='Retry')).to_have_count(0)

    page.goto(site + '/admin/tasks')  # the charts, drawn from these records
    for name in ('outcomes-hour', 'outcomes-day', 'depth', 'durations', 'presses'):
        image = page.locator(f'img[src^="/admin/charts/{name}.svg"]')
        expect(image).to_be_visible()
        assert page.evaluate(f'document.querySelector(\'img[src^="/admin/charts/{name}.svg"]\').naturalWidth') > 0
    answer = page.request.get(site + '/admin/charts/outcomes-hour.svg')
    assert answer.headers['content-type'] == 'image/svg+xml' and '>3 succeeded<' not in answer.text()
    assert re.search(r'<title>\d+ succeeded</title>', answer.text()) and re.search(r'<title>\d+ failed', answer.text())
    weight = sum(len(page.request.get(site + url).body()) for url in (
        '/admin/tasks', '/static/dashboard.js', '/static/sprig.css', '/static/sprig.js',
        *(f'/admin/charts/{name}.svg' for name in ('outcomes-hour', 'outcomes-day', 'depth', 'durations', 'presses'))))
    assert weight < 100_000, weight
    page.locator('[data-charts]').scroll_into_view_if_needed()
    shot(page, 'dashboard-charts')

    phone = context.browser.new_context(viewport={'width': 390, 'height': 844}, is_mobile=True)
    small = phone.new_page()
    small.goto(site + '/login?next=/admin/tasks')
    sign_in(small, site, ADMIN, ADMIN_PASSWORD, '/admin/tasks')
    button = small.locator(f'[data-body="tasks"] tr[data-id="{failed.id}"] button[data-action="retry"]')
    expect(button).to_be_visible(timeout=SOON)
    box = button.bounding_box()
    assert box['x'] + box['width'] <= 390, box  # reachable without scrolling sideways
    assert small.evaluate('document.documentElement.scrollWidth <= window.innerWidth + 1')
    shot(small, 'dashboard-phone')
    phone.close()
