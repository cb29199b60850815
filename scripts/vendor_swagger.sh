#!/usr/bin/env bash
# Refresh the Swagger UI assets that `modelport serve` sends at /docs (no CDN: /docs works offline).
#
#   scripts/vendor_swagger.sh [VERSION]      # default: the newest 5.x of the npm package
#
# Takes swagger-ui-dist (Apache-2.0, SmartBear) from the npm registry and keeps only what the docs
# page loads, with the licence files, in src/modelport/web/static/swagger/.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-5}
dest=src/modelport/web/static/swagger
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$dest"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE \
         swagger-ui-bundle.js.LICENSE.txt; do
  cp "$work/package/$f" "$dest/$f"
done
sed -n 's/.*"version": "\(.*\)".*/\1/p' "$work/package/package.json" > "$dest/VERSION"
echo "vendored swagger-ui-dist $(cat "$dest/VERSION") into $dest"
