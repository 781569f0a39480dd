#!/usr/bin/env bash
# Installs the package the way a user does, from the tarball `npm pack` makes, into a new
# project outside the repository, and checks that `require` and `import` both work there under
# Node and under Bun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bun="$root/node_modules/.bin/bun"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tarball=$(cd "$root" && npm pack --silent --pack-destination "$work" | tail -n 1)
mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "$work/$tarball" >/dev/null

cat > check.cjs <<'JS'
const { initQueue, eventCallbacks } = require('eventlite-native')
const q = initQueue({ dbName: 'data/cjs.sqlite' })
const row = q.store({ cmd: 'hello', data: { from: 'require' } })
if (q.retrieveByID(row.id).data.from !== 'require' || typeof eventCallbacks.void._error !== 'function') process.exit(1)
q.close()
console.log('require ok')
JS
cat > check.mjs <<'JS'
import { initQueue, eventCallbacks } from 'eventlite-native'
const q = initQueue({ dbName: 'data/esm.sqlite' })
const row = q.store({ cmd: 'hello', data: { from: 'import' } })
if (q.retrieveByID(row.id).data.from !== 'import' || typeof eventCallbacks.done !== 'function') process.exit(1)
q.close()
console.log('import ok')
JS

for runtime in node "$bun"; do
  name=$(basename "$runtime")
  "$runtime" check.cjs | sed "s/^/$name: /"
  "$runtime" check.mjs | sed "s/^/$name: /"
done
echo "pack check passed: $tarball installs and loads under node and bun"
