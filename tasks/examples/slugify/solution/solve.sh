#!/bin/bash
# A correct solution: NFKD-decompose, drop combining marks, then collapse non-alphanumerics.
set -euo pipefail
cat > slugify.js <<'JS'
'use strict';

function slugify(text) {
  return String(text)
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

module.exports = slugify;

if (require.main === module) {
  console.log(slugify(process.argv.slice(2).join(' ')));
}
JS
node slugify.js "  Crème Brûlée, 2 pieces!"
