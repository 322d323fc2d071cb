#!/bin/bash
# A correct fix: validate perPage, round the page count up, and index pages from 1.
set -euo pipefail
cat > paginate.js <<'JS'
'use strict';

/**
 * Returns one page of items.
 *
 * @param {Array} items   all items
 * @param {number} page   1-based page number
 * @param {number} perPage items per page (an integer >= 1, else RangeError)
 * @returns {{items: Array, page: number, totalPages: number, hasPrev: boolean, hasNext: boolean}}
 *   A page past the end (or below 1) has no items.
 */
function paginate(items, page, perPage) {
  if (!Number.isInteger(perPage) || perPage < 1) {
    throw new RangeError(`perPage must be an integer >= 1, got ${perPage}`);
  }
  const totalPages = Math.ceil(items.length / perPage);
  const start = (page - 1) * perPage;
  return {
    items: page >= 1 ? items.slice(start, start + perPage) : [],
    page,
    totalPages,
    hasPrev: page > 1,
    hasNext: page < totalPages,
  };
}

module.exports = { paginate };
JS
node --test paginate.test.js
