import unittest

from stats import mean, median, mode


class MeanTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_empty(self):
        with self.assertRaises(ValueError):
            mean([])


class MedianTest(unittest.TestCase):
    def test_odd_sorted(self):
        self.assertEqual(median([1, 2, 3]), 2)

    def test_odd_unsorted(self):
        self.assertEqual(median([9, 1, 5]), 5)

    def test_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_empty(self):
        with self.assertRaises(ValueError):
            median([])


class ModeTest(unittest.TestCase):
    def test_mode(self):
        self.assertEqual(mode([1, 2, 2, 3]), 2)

    def test_tie_goes_to_first(self):
        self.assertEqual(mode(["b", "a", "a", "b"]), "b")


if __name__ == "__main__":
    unittest.main()
