import unittest

from shop.cart import Cart
from shop.pricing import calc_total


class PricingTest(unittest.TestCase):
    def test_calc_total(self):
        self.assertEqual(calc_total([1.0, 2.5]), 3.5)
        self.assertEqual(calc_total([10.0], 0.2), 12.0)

    def test_negative_tax(self):
        with self.assertRaises(ValueError):
            calc_total([1.0], -0.1)


class CartTest(unittest.TestCase):
    def test_total(self):
        cart = Cart(tax_rate=0.1)
        cart.add("tea", 3.0, 2)
        cart.add("cake", 4.0)
        self.assertEqual(cart.total(), 11.0)


if __name__ == "__main__":
    unittest.main()
