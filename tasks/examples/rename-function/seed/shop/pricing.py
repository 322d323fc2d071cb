"""Price calculations."""


def calc_total(prices, tax_rate=0.0):
    """Return the sum of prices plus tax, rounded to cents."""
    if tax_rate < 0:
        raise ValueError("tax_rate must not be negative")
    return round(sum(prices) * (1 + tax_rate), 2)
