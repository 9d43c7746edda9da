"""The course pages in headless Chromium: each list, a category filter, an ordering, a detail page."""
import re

import pytest
from conftest import shot, start_site, wait_js
from playwright.sync_api import expect


@pytest.fixture
def site(spawn, tmp_path) -> str:
    return start_site(spawn, tmp_path)  # `python app.py` seeds the demo catalogue


@pytest.mark.parametrize('kind, heading, cards', [('free', 'Free courses', 4), ('actual', 'Practical courses', 4),
                                                  ('light', 'Light courses', 3)])
def test_each_course_list_page(context, site, kind, heading, cards):
    page = context.new_page()
    page.goto(f'{site}/courses/{kind}')
    expect(page.locator('h1')).to_have_text(heading)
    expect(page.locator('.course-card')).to_have_count(cards)
    expect(page.locator('.kind-tabs a.active')).to_have_text(heading)
    # Every card shows its image, teacher, level, price or "Free", students and sections.
    wait_js(page, "[...document.querySelectorAll('.course-card img')].every(i => i.complete && i.naturalWidth > 0)")
    first = page.locator('.course-card').first
    expect(first.locator('.teacher-line')).not_to_be_empty()
    expect(first.locator('.facts')).to_contain_text('students')
    expect(first.locator('.facts')).to_contain_text('sections')
    expect(first.locator('.price')).to_have_text('Free' if kind == 'free' else re.compile(r'^¥\d+\.\d\d$'))
    shot(page, f'courses-{kind}')
    page.close()


def test_filter_by_category_order_and_open_a_course(context, site):
    page = context.new_page()
    page.goto(f'{site}/courses/actual')
    page.click('.chip[data-category="1"]')  # Python
    page.wait_for_url(f'{site}/courses/actual?category=1')
    expect(page.locator('.chip.active')).to_have_text('Python')
    expect(page.locator('.course-card h2')).to_have_text(['Web development with Bottle and Peewee',
                                                          'Task queues with Huey and Redis'])
    page.click('.ordering[data-ordering="-price"]')  # the category stays
    page.wait_for_url(f'{site}/courses/actual?category=1&ordering=-price')
    expect(page.locator('.course-card h2')).to_have_text(['Task queues with Huey and Redis',
                                                          'Web development with Bottle and Peewee'])
    expect(page.locator('.course-card .price')).to_have_text(['¥499.00', '¥399.00'])
    shot(page, 'courses-actual-python-by-price')

    page.click('text=Task queues with Huey and Redis')
    page.wait_for_url(f'{site}/course/6')
    expect(page.locator('h1')).to_have_text('Task queues with Huey and Redis')
    expect(page.locator('.teacher-card h2')).to_have_text('Alex Chen')
    chapters = page.locator('.chapter')
    expect(chapters).to_have_count(3)
    expect(chapters.first.locator('h3')).to_contain_text('Chapter 1')
    expect(chapters.first.locator('.badge.trial')).to_have_count(1)  # the first section of each chapter
    expect(page.locator('.breadcrumbs a').first).to_have_attribute('href', '/courses/actual')
    shot(page, 'course-detail')
    page.set_viewport_size({'width': 390, 'height': 800})
    assert page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')
    shot(page, 'course-detail-phone')
    assert page.goto(f'{site}/course/9').status == 404  # "coming": not on sale yet
    page.close()
