"""The home page banners: the visible list as the API and the page show it, read through the cache.

Read by the web process (GET /api/v1/home/banners, the home page) and rebuilt by the consumer
(rebuild_banner_cache); both build the list here, so both cache the same thing.
"""
import cached
from models import Banner
from settings import Settings, absolute_url

KEY = 'home:banners'  # the cache key of the visible list


def visible(settings: Settings) -> list[dict]:
    """The banners to show, from the database: shown, not deleted, by orders then id."""
    query = (Banner.select().where(Banner.is_show & ~Banner.is_delete)
             .order_by(Banner.orders, Banner.id).limit(settings.banner.count))
    return [{'id': banner.id, 'title': banner.title, 'image': absolute_url(banner.image, settings.app.base_url),
             'link': banner.link, 'info': banner.info, 'orders': banner.orders} for banner in query]


def cached_banners(settings: Settings) -> cached.Entry:
    """The visible list through the cache (cache-aside, one filler on a miss)."""
    return cached.read(KEY, lambda: visible(settings), settings.cache.ttl)


def rebuild(settings: Settings) -> int:
    """Rewrite the cached list from the database, whatever the cache holds; return its length."""
    banners = visible(settings)
    cached.put(KEY, banners, settings.cache.ttl)
    return len(banners)
