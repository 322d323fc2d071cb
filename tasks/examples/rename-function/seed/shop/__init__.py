"""A tiny shop: prices and carts."""
from shop.pricing import calc_total

__all__ = ["calc_total"]
