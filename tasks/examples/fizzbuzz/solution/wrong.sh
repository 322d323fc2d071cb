#!/bin/bash
# A plausible wrong solution: checks 3 before 15, so 15 prints Fizz; prints on import.
set -euo pipefail
cat > fizzbuzz.py <<'PY'
def fizzbuzz(n):
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    if n % 15 == 0:
        return "FizzBuzz"
    return str(n)


for i in range(1, 101):
    print(fizzbuzz(i))
PY
cat > test_fizzbuzz.py <<'PY'
import unittest

import fizzbuzz


class T(unittest.TestCase):
    def test_three(self):
        self.assertEqual(fizzbuzz.fizzbuzz(3), "Fizz")
PY
