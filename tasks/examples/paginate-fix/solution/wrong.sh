#!/bin/bash
# Passes the given tests but lets NaN and fractions through, and returns items for page 0.
set -euo pipefail
sed -i 's|Math.floor(items.length / perPage)|Math.ceil(items.length / perPage)|; s|const start = page \* perPage;|if (perPage <= 0) throw new RangeError("perPage"); const start = Math.max(0, (page - 1) * perPage);|' paginate.js
