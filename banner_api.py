"""The banner routes of API.md: the cached home list with ETags, and the admin writes."""
from typing import Annotated

from bottle import Bottle
from pydantic import StringConstraints

import banners
import tasks
from api import ApiError, Change, Doc, Image, Input, Line, Link, Orders, cached_ok, ok, parse_body
from auth import Auth
from models import Banner
from settings import Settings

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class NewBanner(Input):
    title: Title
    image: Image
    link: Link = ''
    info: Line = ''
    orders: Orders = 0
    is_show: bool = True


class BannerChange(Change):
    """Only the fields given change. Omitted fields stay None here; an explicit null is refused
    like any value of the wrong type (no default is validated, every given value is)."""

    title: Title = None
    image: Image = None
    link: Link = None
    info: Line = None
    orders: Orders = None
    is_show: bool = None


def admin_view(banner: Banner) -> dict:
    return {'id': banner.id, 'title': banner.title, 'image': banner.image, 'link': banner.link,
            'info': banner.info, 'orders': banner.orders, 'is_show': banner.is_show,
            'created': banner.created, 'updated': banner.updated}


def live_banner(banner_id: int) -> Banner:
    banner = Banner.get_or_none((Banner.id == banner_id) & ~Banner.is_delete)
    if banner is None:
        raise ApiError(404, f'no banner {banner_id}')
    return banner


def install_banner_api(app: Bottle, settings: Settings, auth: Auth) -> None:
    """Mount GET /api/v1/home/banners and the /api/v1/admin/banners routes."""
    limit = settings.app.max_body_kb * 1024

    @app.get('/api/v1/home/banners', doc=Doc('The home page banners (cached; ETag)', statuses=(304,)))
    def home_banners():
        return cached_ok(banners.cached_banners(settings))

    @app.get('/api/v1/admin/banners', doc=Doc('Every banner not deleted', auth='admin'))
    def list_banners() -> dict:
        auth.require_admin()
        rows = Banner.select().where(~Banner.is_delete).order_by(Banner.orders, Banner.id)
        return ok(result=[admin_view(banner) for banner in rows])

    @app.post('/api/v1/admin/banners', doc=Doc('Add a banner', auth='admin', body=NewBanner, statuses=(201,)))
    def create_banner() -> dict:
        auth.require_admin()
        body = parse_body(NewBanner, limit)
        with tasks.writing(keys=(banners.KEY,)):
            banner = Banner.create(**body.model_dump())
        return ok('created', status=201, result=admin_view(banner))

    @app.patch('/api/v1/admin/banners/<banner_id:int>',
               doc=Doc('Change a banner', auth='admin', body=BannerChange, statuses=(404,)))
    def change_banner(banner_id: int) -> dict:
        auth.require_admin()
        body = parse_body(BannerChange, limit)
        with tasks.writing(keys=(banners.KEY,)):
            banner = live_banner(banner_id)
            for name, value in body.model_dump(exclude_unset=True).items():
                setattr(banner, name, value)
            banner.save()
        return ok(result=admin_view(banner))

    @app.delete('/api/v1/admin/banners/<banner_id:int>', doc=Doc('Hide a banner for good (soft delete)', auth='admin',
                                                                 statuses=(404,)))
    def delete_banner(banner_id: int) -> dict:
        """A soft delete: the row stays, hidden from every list."""
        auth.require_admin()
        with tasks.writing(keys=(banners.KEY,)):
            banner = live_banner(banner_id)
            banner.is_delete = True
            banner.save()
        return ok('deleted')

    @app.post('/api/v1/admin/banners/rebuild', doc=Doc('Queue a rebuild of the cached list', auth='admin',
                                                       statuses=(202,)))
    def rebuild_banners() -> dict:
        auth.require_admin()
        return ok('queued', status=202, task_id=tasks.rebuild_banner_cache().id)
