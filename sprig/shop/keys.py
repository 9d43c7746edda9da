"""The cache keys the shop's readers fill and its writes drop (content.STALE says which write drops which)."""

BANNERS = 'home:banners'  # the visible banner list
CATALOGUE = 'courses'  # the namespace of every cached catalogue read: lists, details, categories
SALES = 'seckill:sales'  # the list of flash sales


def sale(item_id: int) -> str:
    """One flash sale's description."""
    return f'seckill:sale:{item_id}'
