"""A shopping cart."""
from shop.pricing import calc_total


class Cart:
    def __init__(self, tax_rate=0.0):
        self.tax_rate = tax_rate
        self.items = []

    def add(self, name, price, quantity=1):
        self.items.append((name, price, quantity))

    def total(self):
        # calc_total takes a flat list of prices.
        return calc_total([p * q for _, p, q in self.items], self.tax_rate)
