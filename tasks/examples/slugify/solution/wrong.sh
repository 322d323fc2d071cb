#!/bin/bash
# Forgets diacritics: "Crème" becomes "cr-me".
set -euo pipefail
cat > slugify.js <<'JS'
function slugify(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}
module.exports = slugify;
if (require.main === module) console.log(slugify(process.argv[2]));
JS
