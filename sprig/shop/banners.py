"""The home page banners: the visible list as the API and the page show it, read through the cache.

Read by the web process (GET /api/v1/home/banners, the home page) and rebuilt by the consumer
(rebuild_banner_cache); both build the list here, so both cache the same thing.
"""
from models import Banner
from sprig.cache import aside
from sprig.settings import Settings, absolute_url
from sprig.shop import keys


def visible(settings: Settings) -> list[dict]:
    """The banners to show, from the database: shown, not deleted, by orders then id."""
    query = Banner.shown().order_by(Banner.orders, Banner.id).limit(settings.banner.count)
    return [{'id': banner.id, 'title': banner.title, 'image': absolute_url(banner.image, settings.app.public_url),
             'link': banner.link, 'info': banner.info, 'orders': banner.orders} for banner in query]


def cached_banners(settings: Settings) -> aside.Entry:
    """The visible list through the cache (cache-aside, one filler on a miss)."""
    return aside.read(keys.BANNERS, lambda: visible(settings), settings.cache.ttl)


def rebuild(settings: Settings) -> int:
    """Rewrite the cached list from the database, whatever the cache holds; return its length."""
    banners = visible(settings)
    aside.put(keys.BANNERS, banners, settings.cache.ttl)
    return len(banners)
