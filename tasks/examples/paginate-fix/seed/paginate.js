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
  const totalPages = Math.floor(items.length / perPage);
  const start = page * perPage;
  return {
    items: items.slice(start, start + perPage),
    page,
    totalPages,
    hasPrev: page > 1,
    hasNext: page < totalPages,
  };
}

module.exports = { paginate };
