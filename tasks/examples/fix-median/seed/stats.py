"""Small descriptive statistics helpers."""


def mean(values):
    """Return the arithmetic mean of a non-empty sequence of numbers."""
    if not values:
        raise ValueError("mean of an empty sequence")
    return sum(values) / len(values)


def median(values):
    """Return the median of a non-empty sequence of numbers.

    For an even number of values the median is the mean of the two middle values.
    The input is not modified.
    """
    n = len(values)
    middle = n // 2
    if n % 2 == 1:
        return values[middle]
    return values[middle]


def mode(values):
    """Return the most common value; ties go to the value seen first."""
    if not values:
        raise ValueError("mode of an empty sequence")
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=counts.get)
