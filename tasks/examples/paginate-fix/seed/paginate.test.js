'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { paginate } = require('./paginate.js');

const letters = 'abcdefghijk'.split(''); // 11 items

test('first page', () => {
  const p = paginate(letters, 1, 5);
  assert.deepStrictEqual(p.items, ['a', 'b', 'c', 'd', 'e']);
  assert.strictEqual(p.totalPages, 3);
  assert.strictEqual(p.hasPrev, false);
  assert.strictEqual(p.hasNext, true);
});

test('last, partial page', () => {
  const p = paginate(letters, 3, 5);
  assert.deepStrictEqual(p.items, ['k']);
  assert.strictEqual(p.hasNext, false);
  assert.strictEqual(p.hasPrev, true);
});

test('page past the end is empty', () => {
  assert.deepStrictEqual(paginate(letters, 4, 5).items, []);
});

test('perPage must be a positive integer', () => {
  assert.throws(() => paginate(letters, 1, 0), RangeError);
});
