"""Demo data: banners, a small course catalogue and a flash sale, so the pages look like a shop.

`python app.py` adds it to an empty database; `python app.py seed` adds what is missing: the
banners while there are none, the catalogue while its three tables are empty, the sale while
there is none and the demo course exists. Seeding twice adds nothing.
"""
import datetime
from decimal import Decimal

from models import (
    Banner,
    Course,
    CourseCategory,
    CourseChapter,
    CourseSection,
    SeckillItem,
    Teacher,
    database,
    utcnow,
)

BANNERS = [
    {'title': 'Python from zero to web', 'image': 'static/banners/python.svg', 'link': '/courses/free',
     'info': 'Free beginner courses: start today', 'orders': 1},
    {'title': 'Flash sale: Linux for developers', 'image': 'static/banners/seckill.svg', 'link': '/seckill/1',
     'info': 'Limited seats at a fraction of the price', 'orders': 2},
    {'title': 'Light courses, one evening each', 'image': 'static/banners/light.svg', 'link': '/courses/light',
     'info': 'Short, focused lessons for busy people', 'orders': 3},
]

CATEGORIES = ['Python', 'Linux & DevOps', 'Web front end', 'Data']

TEACHERS = [
    {'name': 'Alex Chen', 'role': 'lecturer', 'title': 'Senior Python engineer',
     'signature': 'Read the source, then read it again.', 'image': 'static/teachers/1.svg',
     'brief': 'Ten years of Python services, from payment systems to course platforms.'},
    {'name': 'Maria Lopez', 'role': 'lecturer', 'title': 'Site reliability engineer',
     'signature': 'Automate the second time.', 'image': 'static/teachers/2.svg',
     'brief': 'Runs Linux fleets for a living and teaches what the manuals leave out.'},
    {'name': 'Sam Okafor', 'role': 'mentor', 'title': 'Front-end lead',
     'signature': 'Small pages load fast.', 'image': 'static/teachers/3.svg',
     'brief': 'Builds accessible interfaces and reviews hundreds of student projects a year.'},
    {'name': 'Li Wei', 'role': 'class adviser', 'title': 'Data analyst',
     'signature': 'Plot it before you model it.', 'image': 'static/teachers/4.svg',
     'brief': 'Guides students through their first data projects, one question at a time.'},
]

# (name, kind, category, teacher, level, course_type, price, students, orders, status, chapters)
COURSES = [
    ('Python basics in ten lessons', 'free', 0, 0, 'beginner', 'paid', '0', 5210, 1, 'online', 3),
    ('Linux command line survival', 'free', 1, 1, 'beginner', 'paid', '0', 3120, 2, 'online', 2),
    ('HTML and CSS from scratch', 'free', 2, 2, 'beginner', 'paid', '0', 2870, 3, 'online', 2),
    ('Reading data with pandas', 'free', 3, 3, 'beginner', 'paid', '0', 1990, 4, 'online', 2),
    ('Web development with Bottle and Peewee', 'actual', 0, 0, 'intermediate', 'paid', '399', 860, 1, 'online', 4),
    ('Task queues with Huey and Redis', 'actual', 0, 0, 'advanced', 'vip', '499', 420, 2, 'online', 3),
    ('Linux for developers', 'actual', 1, 1, 'intermediate', 'paid', '299', 1310, 3, 'online', 4),
    ('Modern JavaScript projects', 'actual', 2, 2, 'intermediate', 'degree', '599', 640, 4, 'online', 3),
    ('Data analysis, end to end', 'actual', 3, 3, 'advanced', 'degree', '699', 250, 5, 'coming', 3),
    ('Git in one evening', 'light', 1, 1, 'beginner', 'paid', '29', 2400, 1, 'online', 2),
    ('Regular expressions, quickly', 'light', 0, 0, 'intermediate', 'paid', '39', 1750, 2, 'online', 2),
    ('Charts that tell a story', 'light', 3, 3, 'beginner', 'paid', '49', 980, 3, 'online', 2),
]

TOPICS = ['Getting started', 'Core ideas', 'Putting it together', 'A real project', 'Going further']
SECTION_KINDS = ['video', 'video', 'document', 'exercise']


def cover(index: int) -> str:
    return f'static/courses/{index + 1}.svg'


def seed() -> int:
    """Insert the demo data where its table is still empty; return how many rows it added."""
    added = 0
    with database.atomic():
        if not Banner.select().exists():
            Banner.insert_many(BANNERS).execute()
            added += len(BANNERS)
        if not any(model.select().exists() for model in (CourseCategory, Teacher, Course)):
            added += seed_catalogue()
        if not SeckillItem.select().exists():
            added += seed_sale()
    return added


def seed_sale() -> int:
    """One flash sale, on now and for a month: 100 seats of "Linux for developers" at 29.90."""
    course = Course.get_or_none(Course.name == 'Linux for developers')
    if course is None:  # a catalogue of one's own: no demo sale on it
        return 0
    now = utcnow().replace(microsecond=0)
    SeckillItem.create(course=course, price=Decimal('29.90'), stock_total=100, stock_left=100,
                       starts_at=now - datetime.timedelta(minutes=1), ends_at=now + datetime.timedelta(days=30))
    return 1


def seed_catalogue() -> int:
    categories = [CourseCategory.create(name=name, orders=i) for i, name in enumerate(CATEGORIES)]
    teachers = [Teacher.create(orders=i, **teacher) for i, teacher in enumerate(TEACHERS)]
    added = len(categories) + len(teachers)
    start = datetime.date(2026, 1, 5)
    for index, (name, kind, category, teacher, level, course_type, price, students, orders, status,
                chapters) in enumerate(COURSES):
        course = Course.create(
            name=name, kind=kind, category=categories[category], teacher=teachers[teacher], level=level,
            course_type=course_type, price=Decimal(price), students=students, orders=orders, status=status,
            course_img=cover(index), pub_date=start + datetime.timedelta(days=9 * index),
            period=7 if kind == 'light' else 30 if kind == 'free' else 90,
            brief=f'{name}. Level: {level}. Short lessons, exercises after each chapter, a project at the end.')
        added += 1 + seed_chapters(course, chapters)
    return added


def seed_chapters(course: Course, count: int) -> int:
    """`count` chapters of 2-4 sections; the first section of each chapter is a free trial."""
    added, published, planned = 0, 0, 0
    for number in range(1, count + 1):
        chapter = CourseChapter.create(course=course, chapter=number, name=TOPICS[number - 1], orders=number,
                                       summary=f'Chapter {number} of {course.name}.', pub_date=course.pub_date)
        sections = 2 + (number + course.id) % 3
        for position in range(1, sections + 1):
            kind = SECTION_KINDS[(position - 1) % len(SECTION_KINDS)]
            minutes, seconds = 8 + (position * 7 + number) % 20, position * 13 % 60
            CourseSection.create(chapter=chapter, name=f'{chapter.name}, part {position}', orders=position,
                                 section_type=kind, duration=f'{minutes}:{seconds:02d}' if kind == 'video' else '',
                                 free_trail=position == 1, section_link=f'/media/{course.id}/{number}/{position}')
        added += 1 + sections
        planned += sections
        published += sections if course.status == 'online' else 0
    course.sections, course.pub_sections = planned + 2, published
    course.save()
    return added
