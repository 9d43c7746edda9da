"""Courses: the five tables, the list (filters, ordering, pages), the detail, the cache and the
admin writes that drop it, and the query count of the detail."""
import datetime
import subprocess

import pytest
import webtest
from conftest import SECRET, bearer, counting_queries, make_settings, process_env, python

import app as sprig_app
import models
from models import Course, CourseCategory, CourseChapter, CourseSection, Teacher, User, database
from sprig.cache import aside as cached
from sprig.db.connection import init_db
from sprig.db.schema import create_tables
from sprig.settings import PROJECT_DIR
from sprig.shop import demo
from sprig.shop.accounts import hash_password, save_admin

pytestmark = pytest.mark.database  # run again on PostgreSQL (conftest)

BASE = 'https://shop.example'


@pytest.fixture
def shop(tmp_path) -> webtest.TestApp:
    application = sprig_app.create_app(make_settings(tmp_path, SPRIG_APP_BASE_URL=BASE, SPRIG_QUEUE_IMMEDIATE='true'))
    create_tables()
    with database.connection_context():
        demo.seed()
        save_admin('admin_1', 'admin password 1')
        User.create(username='user_one', mobile='13800138001', password_hash=hash_password('user password 1'))
    return webtest.TestApp(application)


def listing(client, query: str = '', status: int = 200) -> dict:
    return client.get(f'/api/v1/courses{query}', status=status).json['result']


def names(result: dict) -> list[str]:
    return [course['name'] for course in result['items']]


def test_categories_in_order(shop):
    result = shop.get('/api/v1/courses/categories').json['result']
    assert result == [{'id': 1, 'name': 'Python'}, {'id': 2, 'name': 'Linux & DevOps'},
                      {'id': 3, 'name': 'Web front end'}, {'id': 4, 'name': 'Data'}]


def test_list_filters_by_kind_and_category_and_shows_only_online_visible_courses(shop):
    assert listing(shop)['count'] == 11  # 12 demo courses, one of them "coming"
    actual = listing(shop, '?kind=actual')
    assert actual['count'] == 4 and 'Data analysis, end to end' not in names(actual)
    assert names(listing(shop, '?kind=actual&category=1')) == ['Web development with Bottle and Peewee',
                                                              'Task queues with Huey and Redis']
    assert listing(shop, '?category=4')['count'] == 2
    assert listing(shop, '?category=999') == {'count': 0, 'page': 1, 'size': 10, 'items': []}
    with database.connection_context():
        Course.update(is_show=False).where(Course.id == 5).execute()
        Course.update(is_delete=True).where(Course.id == 6).execute()
        Course.update(status='offline').where(Course.id == 7).execute()
    cached.drop(namespaces=['courses'])  # those writes went behind the cache's back
    assert names(listing(shop, '?kind=actual')) == ['Modern JavaScript projects']


def test_a_course_as_the_list_shows_it(shop):
    course = listing(shop, '?kind=actual&size=1')['items'][0]
    assert course == {
        'id': 5, 'name': 'Web development with Bottle and Peewee', 'kind': 'actual',
        'course_img': f'{BASE}/static/courses/5.svg', 'course_type': 'paid', 'brief': course['brief'],
        'level': 'intermediate', 'pub_date': '2026-02-10', 'period': 90, 'status': 'online', 'students': 860,
        'sections': course['sections'], 'pub_sections': course['pub_sections'], 'price': '399.00', 'orders': 1,
        'category': {'id': 1, 'name': 'Python'},
        'teacher': {'id': 1, 'name': 'Alex Chen', 'title': 'Senior Python engineer',
                    'image': f'{BASE}/static/teachers/1.svg'}}
    assert 0 < course['pub_sections'] <= course['sections']


@pytest.mark.parametrize('ordering, expected', [
    ('price', [1, 2, 3, 4, 10, 11, 12, 7, 5, 6, 8]),
    ('-price', [8, 6, 5, 7, 12, 11, 10, 1, 2, 3, 4]),
    ('-students', [1, 2, 3, 10, 4, 11, 7, 12, 5, 8, 6]),
    ('students', [6, 8, 5, 12, 7, 11, 4, 10, 3, 2, 1]),
    ('id', [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]),
    ('-id', [12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1]),
    ('orders', [1, 5, 10, 2, 6, 11, 3, 7, 12, 4, 8]),
])
def test_ordering(shop, ordering, expected):
    assert [course['id'] for course in listing(shop, f'?ordering={ordering}&size=50')['items']] == expected


def test_pagination_edges(shop):
    first, last = listing(shop, '?size=5'), listing(shop, '?size=5&page=3')
    assert (first['count'], len(first['items']), len(last['items'])) == (11, 5, 1)
    assert listing(shop, '?size=5&page=4') == {'count': 11, 'page': 4, 'size': 5, 'items': []}  # past the end
    assert len(listing(shop, '?size=50')['items']) == 11
    for query, field in [('?size=0', 'size'), ('?size=51', 'size'), ('?size=ten', 'size'), ('?page=0', 'page'),
                         ('?page=two', 'page'), ('?page=1.5', 'page'), ('?category=python', 'category'),
                         ('?kind=paid', 'kind'), ('?ordering=name', 'ordering'), ('?ordering=-', 'ordering'),
                         ('?colour=red', 'colour'), ('?page=99999999999999999999', 'page')]:
        answer = shop.get(f'/api/v1/courses{query}', status=400).json
        assert answer['code'] == 400 and field in answer['errors'], query


def test_detail_with_teacher_and_chapters_and_sections_in_order(shop):
    with database.connection_context():
        course = Course.create(name='Ordered', kind='free', teacher=2, category=2)
        second = CourseChapter.create(course=course, chapter=2, name='Second')
        first = CourseChapter.create(course=course, chapter=1, name='First')
        CourseChapter.create(course=course, chapter=3, name='Hidden', is_show=False)
        for orders, name in [(3, 'c'), (1, 'a'), (2, 'b')]:
            CourseSection.create(chapter=first, name=name, orders=orders, duration='1:00', free_trail=orders == 1)
        CourseSection.create(chapter=first, name='gone', orders=0, is_delete=True)
        CourseSection.create(chapter=second, name='z', orders=1, section_type='document')
    detail = shop.get(f'/api/v1/courses/{course.id}').json['result']
    assert detail['teacher'] == {'id': 2, 'name': 'Maria Lopez', 'title': 'Site reliability engineer',
                                 'image': f'{BASE}/static/teachers/2.svg', 'role': 'lecturer',
                                 'signature': 'Automate the second time.', 'brief': demo.TEACHERS[1]['brief']}
    assert [(chapter['chapter'], chapter['name']) for chapter in detail['chapters']] == [(1, 'First'), (2, 'Second')]
    assert detail['chapters'][0]['sections'] == [
        {'name': 'a', 'orders': 1, 'section_type': 'video', 'duration': '1:00', 'free_trail': True},
        {'name': 'b', 'orders': 2, 'section_type': 'video', 'duration': '1:00', 'free_trail': False},
        {'name': 'c', 'orders': 3, 'section_type': 'video', 'duration': '1:00', 'free_trail': False}]
    assert detail['chapters'][1]['sections'][0]['section_type'] == 'document'


def test_detail_is_404_for_unknown_offline_hidden_and_deleted_courses(shop):
    with database.connection_context():
        Course.update(status='offline').where(Course.id == 1).execute()
        Course.update(is_show=False).where(Course.id == 2).execute()
        Course.update(is_delete=True).where(Course.id == 3).execute()
    for course_id in (1, 2, 3, 9, 999):  # 9 is "coming"
        assert shop.get(f'/api/v1/courses/{course_id}', status=404).json['code'] == 404
    shop.get('/api/v1/courses/abc', status=404)


def test_the_detail_query_count_does_not_grow_with_chapters(shop):
    def statements(course_id: int) -> int:
        cached.drop(namespaces=['courses'])
        with counting_queries() as log:
            shop.get(f'/api/v1/courses/{course_id}')
        return len(log)
    with database.connection_context():
        small, large = (Course.create(name=name, kind='actual', teacher=1, category=1) for name in ('S', 'L'))
        for course, chapters in ((small, 1), (large, 12)):
            for number in range(1, chapters + 1):
                chapter = CourseChapter.create(course=course, chapter=number, name=f'C{number}')
                for orders in range(3):
                    CourseSection.create(chapter=chapter, name=f'S{orders}', orders=orders)
    assert statements(small.id) == statements(large.id) <= 4


def test_served_from_cache_and_an_edit_through_our_code_is_on_the_next_read(shop):
    admin = bearer(shop, 'admin_1', 'admin password 1')
    assert shop.get('/api/v1/courses?kind=light').headers['X-Cache'] == 'miss'
    assert shop.get('/api/v1/courses?kind=light').headers['X-Cache'] == 'hit'
    assert shop.get('/api/v1/courses/10').headers['X-Cache'] == 'miss'
    assert shop.get('/api/v1/courses/10').headers['X-Cache'] == 'hit'
    etag = shop.get('/api/v1/courses/10').headers['ETag']
    shop.get('/api/v1/courses/10', headers={'If-None-Match': etag}, status=304)

    shop.patch_json('/api/v1/admin/courses/10', {'price': '19.90', 'name': 'Git in one hour'}, headers=admin)
    reply = shop.get('/api/v1/courses?kind=light')
    assert reply.headers['X-Cache'] == 'miss' and reply.json['result']['items'][0]['name'] == 'Git in one hour'
    assert shop.get('/api/v1/courses/10').json['result']['price'] == '19.90'
    shop.get('/api/v1/courses/10', headers={'If-None-Match': etag}, status=200)  # a new version

    # Writes to the other four tables reach the cached course too.
    shop.patch_json('/api/v1/admin/teachers/2', {'title': 'Principal engineer'}, headers=admin)
    assert shop.get('/api/v1/courses/10').json['result']['teacher']['title'] == 'Principal engineer'
    shop.patch_json('/api/v1/admin/categories/2', {'name': 'Linux'}, headers=admin)
    assert shop.get('/api/v1/courses/10').json['result']['category']['name'] == 'Linux'
    with database.connection_context():
        chapter = CourseChapter.get(CourseChapter.course == 10, CourseChapter.chapter == 1)
        section = chapter.sections.order_by(CourseSection.orders).first()
    shop.patch_json(f'/api/v1/admin/chapters/{chapter.id}', {'name': 'Renamed chapter'}, headers=admin)
    shop.patch_json(f'/api/v1/admin/sections/{section.id}', {'free_trail': False}, headers=admin)
    first = shop.get('/api/v1/courses/10').json['result']['chapters'][0]
    assert first['name'] == 'Renamed chapter' and first['sections'][0]['free_trail'] is False
    shop.delete('/api/v1/admin/courses/10', headers=admin)
    shop.get('/api/v1/courses/10', status=404)
    assert 'Git in one hour' not in names(listing(shop, '?kind=light'))


def test_admin_writes_are_checked_and_bad_input_writes_nothing(shop):
    admin = bearer(shop, 'admin_1', 'admin password 1')
    user = bearer(shop, 'user_one', 'user password 1')
    shop.post_json('/api/v1/admin/categories', {'name': 'New'}, status=401)
    shop.post_json('/api/v1/admin/categories', {'name': 'New'}, headers=user, status=403)
    shop.get('/api/v1/admin/courses', headers=user, status=403)
    created = shop.post_json('/api/v1/admin/categories', {'name': 'New'}, headers=admin, status=201).json['result']
    assert created['name'] == 'New' and created['is_delete'] is False
    assert shop.post_json('/api/v1/admin/categories', {'name': 'New'}, headers=admin, status=409).json['errors'] == {
        'name': 'already taken'}
    bad = shop.post_json('/api/v1/admin/courses', {
        'name': '', 'kind': 'cheap', 'price': '-1', 'level': 'guru', 'students': -5, 'pub_date': 'yesterday',
        'course_img': 'javascript:alert(1)', 'teacher': 'Alex', 'extra': True}, headers=admin, status=400).json
    assert set(bad['errors']) == {'name', 'kind', 'price', 'level', 'students', 'pub_date', 'course_img', 'teacher',
                                  'extra'}
    missing = shop.post_json('/api/v1/admin/courses', {'name': 'X', 'kind': 'free', 'teacher': 99, 'category': 98},
                             headers=admin, status=400).json
    assert missing['errors'] == {'teacher': 'no such teacher: 99', 'category': 'no such coursecategory: 98'}
    assert 'pub_sections' in shop.post_json('/api/v1/admin/courses', {
        'name': 'X', 'kind': 'free', 'sections': 2, 'pub_sections': 3}, headers=admin, status=400).text
    shop.post_json('/api/v1/admin/sections', {'chapter': 1, 'name': 'S', 'duration': '99'}, headers=admin, status=400)
    shop.patch_json('/api/v1/admin/courses/1', {}, headers=admin, status=400)
    shop.patch_json('/api/v1/admin/courses/1', {'name': None}, headers=admin, status=400)
    shop.patch_json('/api/v1/admin/courses/999', {'name': 'x'}, headers=admin, status=404)
    shop.patch_json('/api/v1/admin/widgets/1', {'name': 'x'}, headers=admin, status=404)
    with database.connection_context():
        assert Course.select().count() == 12 and Course.get_by_id(1).name == 'Python basics in ten lessons'
    course = shop.post_json('/api/v1/admin/courses', {'name': 'Brand new', 'kind': 'light', 'price': '9.5',
                                                      'teacher': 1, 'category': 1}, headers=admin, status=201).json
    assert course['result']['price'] == '9.50'
    assert 'Brand new' in names(listing(shop, '?kind=light'))
    rows = shop.get('/api/v1/admin/courses?page=1', headers=admin).json['result']
    assert len(rows) == 13 and rows[-1]['teacher'] == 1
    shop.get('/api/v1/admin/courses?page=zero', headers=admin, status=400)


@pytest.fixture(params=['sqlite', 'postgres', 'mysql'])
def any_database(request, tmp_path):
    url = '' if request.param == 'sqlite' else request.getfixturevalue(f'{request.param}_url')
    init_db(make_settings(tmp_path, SPRIG_DATABASE_URL=url, SPRIG_APP_SECRET_KEY=SECRET))
    with database.connection_context():
        database.drop_tables(list(reversed(models.MODELS)), safe=True)
    create_tables()
    yield
    init_db(make_settings(tmp_path))


def test_deleting_rows_cascades_or_clears_as_the_notes_say(any_database):
    with database.connection_context():
        teacher, category = Teacher.create(name='T'), CourseCategory.create(name='C')
        course = Course.create(name='X', kind='free', teacher=teacher, category=category,
                               pub_date=datetime.date(2026, 1, 1))
        chapter = CourseChapter.create(course=course, chapter=1, name='One')
        CourseSection.create(chapter=chapter, name='S')
        Teacher.delete().where(Teacher.id == teacher.id).execute()  # plain SQL deletes, as a DBA would
        CourseCategory.delete().where(CourseCategory.id == category.id).execute()
        left = Course.get_by_id(course.id)
        assert (left.teacher_id, left.category_id) == (None, None)
        Course.delete().where(Course.id == course.id).execute()
        assert CourseChapter.select().count() == 0 and CourseSection.select().count() == 0


def test_seed_adds_the_demo_shop_once(tmp_path):
    def seed() -> str:
        done = subprocess.run(python('app.py', 'seed'), env=process_env(tmp_path), cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()
    assert seed() == 'demo data: 152 rows added'
    assert seed() == 'demo data: 0 rows added'
    init_db(make_settings(tmp_path))
    with database.connection_context():
        counts = {model.__name__: model.select().count() for model in (CourseCategory, Teacher, Course)}
        kinds = {kind: Course.select().where(Course.kind == kind).count() for kind in Course.KINDS}
    assert counts == {'CourseCategory': 4, 'Teacher': 4, 'Course': 12}
    assert kinds == {'free': 4, 'actual': 5, 'light': 3}
    assert all(course.chapters.count() >= 2 for course in Course.select())
