"""The banner routes of API.md: the cached home list with ETags, and the admin writes."""
from typing import Annotated

from pydantic import StringConstraints

import tasks
from models import Banner, User
from sprig.settings import Settings
from sprig.shop import banners, content
from sprig.web.api.catalogue import declare_bulk
from sprig.web.envelope import cached_ok, ok
from sprig.web.inputs import Change, Image, Input, Line, Link, Orders
from sprig.web.routing import Routes, get_or_404

ROUTES = Routes()
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
    return get_or_404(Banner.live(), Banner.id == banner_id, missing=f'no banner {banner_id}')


@ROUTES.get('/api/v1/home/banners', 'The home page banners (cached; ETag)', statuses=(304,))
def home_banners(settings: Settings):
    return cached_ok(banners.cached_banners(settings))


@ROUTES.get('/api/v1/admin/banners', 'Every banner not deleted', auth='editor')
def list_banners() -> dict:
    rows = Banner.live().order_by(Banner.orders, Banner.id)
    return ok(result=[admin_view(banner) for banner in rows])


@ROUTES.post('/api/v1/admin/banners', 'Add a banner', auth='editor', body=NewBanner, statuses=(201,))
def create_banner(body: NewBanner, user: User) -> dict:
    banner = Banner()
    content.save(banner, body.model_dump(), user)
    return ok('created', status=201, result=admin_view(banner))


@ROUTES.patch('/api/v1/admin/banners/<banner_id:int>', 'Change a banner', auth='editor', body=BannerChange,
              statuses=(404,))
def change_banner(banner_id: int, body: BannerChange, user: User) -> dict:
    banner = live_banner(banner_id)
    content.save(banner, body.model_dump(exclude_unset=True), user)
    return ok(result=admin_view(banner))


@ROUTES.delete('/api/v1/admin/banners/<banner_id:int>', 'Hide a banner for good (soft delete)', auth='editor',
               statuses=(404,))
def delete_banner(banner_id: int, user: User) -> dict:
    content.soft_delete(live_banner(banner_id), user)
    return ok('deleted')


declare_bulk(ROUTES, '/api/v1/admin/banners', Banner)


@ROUTES.post('/api/v1/admin/banners/rebuild', 'Queue a rebuild of the cached list', auth='editor', statuses=(202,))
def rebuild_banners() -> dict:
    return ok('queued', status=202, task_id=tasks.rebuild_banner_cache().id)
