"""Tables: the database handle (bound once by sprig.db.connection.init_db), the base models, the
tables with their named queries and invariants."""
import datetime

from peewee import (
    BooleanField,
    CharField,
    Check,
    DatabaseProxy,
    DateField,
    DateTimeField,
    DecimalField,
    Expression,
    ForeignKeyField,
    IntegerField,
    Model,
    ModelSelect,
    TextField,
)

database = DatabaseProxy()


def utcnow() -> datetime.datetime:
    """Stored times are naive UTC: every backend compares them the same way."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class User(BaseModel):
    # What a user may do besides buying: an editor runs the content (banners, catalogue, sales),
    # an admin everything (users, orders, tasks too).
    ROLES = ('user', 'editor', 'admin')

    username = CharField(max_length=20, unique=True)
    # Unique but optional: NULLs never collide, so admins created on the command line need none.
    mobile = CharField(max_length=11, unique=True, null=True)
    email = CharField(max_length=254, unique=True, null=True)
    password_hash = CharField(max_length=200)
    role = CharField(max_length=8, choices=[(role, role) for role in ROLES], default='user')  # since version 3
    is_active = BooleanField(default=True)
    created = DateTimeField(default=utcnow)
    last_login = DateTimeField(null=True)  # since schema version 1

    @property
    def is_admin(self) -> bool:
        return self.role == 'admin'

    @property
    def is_staff(self) -> bool:
        return self.role in ('editor', 'admin')

    @classmethod
    def has_mobile(cls, mobile: str) -> bool:
        return cls.select().where(cls.mobile == mobile).exists()

    def public(self) -> dict:
        return {'id': self.id, 'username': self.username, 'mobile': self.mobile, 'email': self.email,
                'role': self.role, 'is_admin': self.is_admin, 'created': self.created, 'last_login': self.last_login}


class Token(BaseModel):
    """A login: only a keyed hash of the token is stored, so a copy of the table logs nobody in."""

    digest = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref='tokens', on_delete='CASCADE')
    created = DateTimeField(default=utcnow)
    expires = DateTimeField(index=True)


class ContentModel(BaseModel):
    """The columns every shop table shares, as the notes' BaseModel has them: an order to sort
    by, shown or hidden, soft-deleted, and when it was created and last saved."""

    orders = IntegerField(default=0)
    is_show = BooleanField(default=True)
    is_delete = BooleanField(default=False)
    created = DateTimeField(default=utcnow)
    updated = DateTimeField(default=utcnow)

    @classmethod
    def is_live(cls) -> Expression:
        """The one definition of live content: not soft-deleted (hidden rows are live too)."""
        return ~cls.is_delete

    @classmethod
    def live(cls, *fields) -> ModelSelect:
        return cls.select(*fields).where(cls.is_live())

    @classmethod
    def shown(cls, *fields) -> ModelSelect:
        """Live rows people may see."""
        return cls.live(*fields).where(cls.is_show)

    def save(self, *args, **kwargs):
        self.updated = utcnow()
        return super().save(*args, **kwargs)


class Banner(ContentModel):
    """A slide of the home page carousel."""

    title = CharField(max_length=64)
    image = CharField(max_length=255)  # a path on this site (static/...) or an absolute URL
    link = CharField(max_length=255, default='')  # a path on this site or an absolute URL
    info = CharField(max_length=255, default='')

    class Meta:
        indexes = ((('is_delete', 'is_show', 'orders'), False),)  # the home page's query


class CourseCategory(ContentModel):
    name = CharField(max_length=64, unique=True)


class Teacher(ContentModel):
    ROLES = ('lecturer', 'mentor', 'class adviser')

    name = CharField(max_length=32)
    role = CharField(max_length=16, choices=[(role, role) for role in ROLES], default='lecturer')
    title = CharField(max_length=64, default='')  # e.g. "Senior Python engineer"
    signature = CharField(max_length=255, default='')  # a line in the teacher's own words
    image = CharField(max_length=255, default='')  # a path on this site or an absolute URL
    brief = TextField(default='')


class Course(ContentModel):
    KINDS = ('free', 'actual', 'light')
    TYPES = ('paid', 'vip', 'degree')
    LEVELS = ('beginner', 'intermediate', 'advanced')
    STATUSES = ('online', 'offline', 'coming')

    name = CharField(max_length=128)
    kind = CharField(max_length=8, choices=[(kind, kind) for kind in KINDS])
    course_img = CharField(max_length=255, default='')
    course_type = CharField(max_length=8, choices=[(kind, kind) for kind in TYPES], default='paid')
    brief = TextField(default='')
    level = CharField(max_length=16, choices=[(level, level) for level in LEVELS], default='beginner')
    pub_date = DateField(default=datetime.date.today)
    period = IntegerField(default=7)  # days a student is advised to take
    attachment_path = CharField(max_length=255, default='')
    status = CharField(max_length=8, choices=[(status, status) for status in STATUSES], default='online')
    students = IntegerField(default=0)
    sections = IntegerField(default=0)  # planned in all
    pub_sections = IntegerField(default=0)  # published so far
    price = DecimalField(max_digits=10, decimal_places=2, default=0)
    # Deleting a teacher or a category leaves its courses without one.
    teacher = ForeignKeyField(Teacher, null=True, backref='courses', on_delete='SET NULL')
    category = ForeignKeyField(CourseCategory, null=True, backref='courses', on_delete='SET NULL')

    class Meta:
        indexes = ((('kind', 'status', 'is_show', 'is_delete', 'orders'), False),)  # the list pages


class CourseChapter(ContentModel):
    course = ForeignKeyField(Course, backref='chapters', on_delete='CASCADE')
    chapter = IntegerField()  # its number in the course
    name = CharField(max_length=128)
    summary = TextField(default='')
    pub_date = DateField(default=datetime.date.today)


class CourseSection(ContentModel):
    TYPES = ('document', 'exercise', 'video')

    chapter = ForeignKeyField(CourseChapter, backref='sections', on_delete='CASCADE')
    name = CharField(max_length=128)
    section_type = CharField(max_length=8, choices=[(kind, kind) for kind in TYPES], default='video')
    section_link = CharField(max_length=255, default='')  # the video or document address
    duration = CharField(max_length=16, default='')  # "12:30" for videos
    pub_date = DateField(default=datetime.date.today)
    free_trail = BooleanField(default=False)  # the notes' name: watchable before buying


class SeckillItem(BaseModel):
    """A flash sale of a course: `stock_left` units at `price` between two instants (UTC)."""

    course = ForeignKeyField(Course, backref='sales', on_delete='CASCADE')
    price = DecimalField(max_digits=10, decimal_places=2)
    stock_total = IntegerField()
    stock_left = IntegerField(constraints=[Check('stock_left >= 0')])  # never oversold, whatever the code
    starts_at = DateTimeField()
    ends_at = DateTimeField()
    created = DateTimeField(default=utcnow)


class Order(BaseModel):
    """A course bought: a seat won in a flash sale (`item`), or the course at its price. `live` is
    1 until the order is cancelled, then NULL: the unique indexes on (user, item, live) and (user,
    course, live) let the database refuse a second live order for the same user and sale, or the
    same user and course, on every backend (NULLs never collide)."""

    STATUSES = ('pending_payment', 'paid', 'cancelled', 'refunded')

    user = ForeignKeyField(User, backref='orders', on_delete='CASCADE')
    item = ForeignKeyField(SeckillItem, null=True, backref='orders', on_delete='CASCADE')  # since version 2
    course = ForeignKeyField(Course, null=True, backref='purchases', on_delete='CASCADE')  # since version 2
    # The press that won it (a re-run finds it), or a random one for a course bought at its price.
    task_id = CharField(max_length=64, unique=True)
    status = CharField(max_length=16, choices=[(status, status) for status in STATUSES], default='pending_payment')
    live = BooleanField(null=True, default=True)
    price = DecimalField(max_digits=10, decimal_places=2)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    paid_at = DateTimeField(null=True)
    cancelled_at = DateTimeField(null=True)

    class Meta:
        indexes = ((('user', 'item', 'live'), True), (('user', 'course', 'live'), True))

    def public(self) -> dict:
        return {'id': self.id, 'item_id': self.item_id, 'course_id': self.course_id, 'status': self.status,
                'price': f'{self.price:.2f}',
                'created_at': self.created_at, 'expires_at': self.expires_at, 'paid_at': self.paid_at,
                'cancelled_at': self.cancelled_at}


class Enrolment(BaseModel):
    """A course a user follows: a free one started, or one bought and paid (since version 2)."""

    user = ForeignKeyField(User, backref='enrolments', on_delete='CASCADE')
    course = ForeignKeyField(Course, backref='enrolments', on_delete='CASCADE')
    created = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((('user', 'course'), True),)


class Payment(BaseModel):
    """A payment provider's notice that an order was paid, kept once per transaction: a notice
    sent again (a retry, a replay) finds its row and changes nothing (since version 2)."""

    transaction = CharField(max_length=100, unique=True)
    order = ForeignKeyField(Order, backref='payments', on_delete='CASCADE')
    provider = CharField(max_length=32)
    amount = DecimalField(max_digits=10, decimal_places=2)
    created = DateTimeField(default=utcnow)


class AuditEntry(BaseModel):
    """A staff write: who made it, when, to which row, and the fields it changed."""

    actor = ForeignKeyField(User, null=True, backref='writes', on_delete='SET NULL')
    actor_name = CharField(max_length=20)  # kept when the account is gone
    at = DateTimeField(default=utcnow, index=True)
    action = CharField(max_length=16)  # create, change, delete, restore, disable, cancel, ...
    kind = CharField(max_length=32)  # the row's table
    row_id = IntegerField()
    changes = TextField(default='{}')  # JSON: {field: [before, after]}

    class Meta:
        indexes = ((('kind', 'row_id'), False),)


class SchemaVersion(BaseModel):
    """One row (id 1): how many of MIGRATIONS this database has had."""

    version = IntegerField()


class TaskRecord(BaseModel):
    """One task's life, from enqueue to its end (see sprig/queue/records.py): what the API and dashboard read."""

    id = CharField(max_length=64, primary_key=True)  # Huey's task id: a random UUID
    name = CharField(max_length=100, index=True)
    args = TextField(default='')  # a summary for people, secrets masked
    payload = TextField(null=True)  # the real arguments as JSON, to run it again
    state = CharField(max_length=10, index=True)
    user_id = IntegerField(null=True, index=True)  # who caused it, when a user did
    consumer = CharField(max_length=100, null=True)
    created_at = DateTimeField(index=True)
    eta = DateTimeField(null=True)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    retries = IntegerField(default=0)
    error = TextField(null=True)
    result = TextField(null=True)
    requeued = BooleanField(default=False)  # re-enqueued once after its consumer died
    # Since schema version 4: each transition as a JSON line [state, at, consumer, worker, error],
    # a failure's traceback, and the request that enqueued the task.
    events = TextField(default='')
    traceback = TextField(null=True)
    request_id = CharField(max_length=64, null=True)

    def public(self) -> dict:
        return {field: getattr(self, field) for field in (
            'id', 'name', 'args', 'state', 'created_at', 'eta', 'started_at', 'finished_at',
            'retries', 'error', 'result', 'user_id')}


class ConsumerBeat(BaseModel):
    """A consumer's heartbeat: alive while beat_at is recent."""

    id = CharField(max_length=100, primary_key=True)
    host = CharField(max_length=255)
    pid = IntegerField()
    workers = IntegerField()
    started_at = DateTimeField()
    beat_at = DateTimeField(index=True)


class Lease(BaseModel):
    """A named lease (the scheduler's leadership): held by `holder` until `expires`."""

    name = CharField(max_length=50, primary_key=True)
    holder = CharField(max_length=100, null=True)
    expires = DateTimeField()


class Schedule(BaseModel):
    """An interval task's clock, shared so that a new leader goes on where the last one stopped."""

    name = CharField(max_length=100, primary_key=True)
    every = IntegerField()
    last_run = DateTimeField(null=True)
    next_run = DateTimeField()


# Every table, in creation order (a table after those it refers to).
MODELS: list[type[Model]] = [User, Token, Banner, CourseCategory, Teacher, Course, CourseChapter, CourseSection,
                             SeckillItem, Order, Enrolment, Payment, AuditEntry, TaskRecord, ConsumerBeat, Lease,
                             Schedule, SchemaVersion]
# The tables people fill: a database with rows in none of them is a fresh install.
CONTENT: list[type[Model]] = [User, Banner, CourseCategory, Teacher, Course]


def is_empty() -> bool:
    """True when no demo or user data exists yet (a fresh install); task bookkeeping does not count."""
    with database.connection_context():
        return not any(model.select().exists() for model in CONTENT)
