#!/usr/bin/env bash
# Installs the package the way a user does, from the tarball `npm pack` makes, into a new
# project outside the repository, and checks there that:
# - the install pulls no other package;
# - `require` and `import` both work under Node and under Bun, with the shipped binary;
# - with no binary that loads and no Rust toolchain, the install fails with one line that
#   names the platform and says what to install;
# - with no binary and Rust present, the install builds from the tarball's sources, leaves no
#   build folder behind, and the SQLite inside the built addon has the compile options of
#   .cargo/config.toml (asked of that SQLite itself: see compile-options.cjs below).
# The source build is a full release build: a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bun="$root/node_modules/.bin/bun"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
platform=$(node -p 'process.platform + "-" + process.arch')
binary="eventlite-native.$platform.node"

tarball=$(cd "$root" && npm pack --silent --pack-destination "$work" | tail -n 1)
tar tzf "$work/$tarball" | sed 's|^package/||' > "$work/contents"
for file in package.json LICENSE CHANGELOG.md README.md .cargo/config.toml scripts/build.js Cargo.toml Cargo.lock src/lib.rs "$binary"; do
  grep -qxF "$file" "$work/contents" || { echo "the tarball lacks $file"; exit 1; }
done
if grep -q '^target/' "$work/contents"; then echo 'the tarball holds target/'; exit 1; fi

mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error "$work/$tarball" >/dev/null
installed=$(node -p 'Object.keys(require("./package-lock.json").packages).filter(Boolean).join(" ")')
if [ "$installed" != "node_modules/eventlite-native" ]; then
  echo "installing the package pulled other packages: $installed"
  exit 1
fi
echo "installs alone: node_modules holds eventlite-native only"
package="$work/app/node_modules/eventlite-native"

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
loads() {
  for runtime in node "$bun"; do
    name=$(basename "$runtime")
    "$runtime" check.cjs | sed "s/^/$name: /"
    "$runtime" check.mjs | sed "s/^/$name: /"
  done
}
loads

# No binary that loads, and no cargo on PATH: a PATH with node, npm and sh only.
rm "$package/$binary"
mkdir "$work/bin"
for tool in node npm sh; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
if output=$(PATH="$work/bin" npm rebuild eventlite-native 2>&1); then
  echo 'the install succeeded without a binary and without Rust'
  exit 1
fi
ours=$(grep 'eventlite-native: ' <<<"$output" | sed 's/^npm error //' || true)
if [ "$(grep -c . <<<"$ours")" != 1 ] || ! grep -qF "$platform" <<<"$ours" || ! grep -qF 'https://rustup.rs' <<<"$ours"; then
  printf 'without Rust, the install should fail with one line naming %s and rustup; npm printed:\n%s\n' "$platform" "$output"
  exit 1
fi
echo "without Rust: $ours"

# No binary, Rust present: a source build from the tarball, in a temporary target folder.
mkdir "$work/tmp"
env -u CARGO_TARGET_DIR TMPDIR="$work/tmp" npm rebuild eventlite-native --foreground-scripts --loglevel=error
[ -f "$package/$binary" ] || { echo "the source build made no $binary"; exit 1; }
[ ! -e "$package/target" ] || { echo 'the source build left target/ in node_modules'; exit 1; }
[ -z "$(ls -A "$work/tmp")" ] || { echo "the source build left $(ls "$work/tmp") in the temp folder"; exit 1; }
loads

# The options the addon's own SQLite reports, read through the package: a trigger (added with
# bun:sqlite while no queue has the file open) copies `pragma_compile_options` into events when
# the package stores one, inside the package's SQLite.
cat > compile-options.cjs <<'JS'
const fs = require('node:fs')
const path = require('node:path')
const { Database } = require('bun:sqlite')
const { initQueue } = require('eventlite-native')
const config = fs.readFileSync(path.join(path.dirname(require.resolve('eventlite-native')), '.cargo/config.toml'), 'utf8')
const expected = config.match(/^LIBSQLITE3_FLAGS = "(.*)"$/m)[1].split(/\s+/).map((flag) => flag.replace(/^-DSQLITE_/, ''))
const file = 'data/options.sqlite'
initQueue({ dbName: file }).close()
const db = new Database(file)
db.exec(`CREATE TRIGGER report_options AFTER INSERT ON queue WHEN NEW.cmd = 'report' BEGIN
  INSERT INTO queue (datetime, cmd, data) SELECT 0, 'option', json_quote(compile_options) FROM pragma_compile_options;
END`)
db.close()
const q = initQueue({ dbName: file })
q.store({ cmd: 'report' })
const reported = q.getEventsByCmdPaginated('option', { limit: 10000 }).events.map((event) => event.data)
q.close()
const missing = expected.filter((option) => !reported.includes(option))
if (reported.length === 0 || missing.length > 0) {
  console.error(`the built SQLite lacks ${missing.join(', ')}; it reports ${reported.join(', ')}`)
  process.exit(1)
}
console.log(`the built SQLite has ${expected.join(', ')}`)
JS
"$bun" compile-options.cjs
echo "pack check passed: $tarball installs alone, loads under node and bun, and builds from source with the SQLite flags"
