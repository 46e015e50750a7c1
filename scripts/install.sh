#!/usr/bin/env bash
# Installs the `cage` command from this checkout: packs every public workspace package
# (pnpm pack rewrites workspace: dependencies to versions) and installs the tarballs together
# with npm, so the @cage packages resolve to each other and nothing Cage-specific comes from
# the registry. Run scripts/setup.sh first (it builds dist/).
#
# Usage: bash scripts/install.sh [--prefix DIR]
#   default: npm's global prefix (`npm prefix -g`), so `cage` lands on the PATH beside npm;
#   --prefix DIR: DIR/bin/cage (for a user without root, or a throwaway install).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=()
if [ "${1:-}" = "--prefix" ] && [ -n "${2:-}" ]; then
  prefix=(--prefix "$2")
elif [ $# -gt 0 ]; then
  echo "usage: bash scripts/install.sh [--prefix DIR]" >&2
  exit 2
fi
[ -f apps/cli/dist/bin.js ] || { echo "install: apps/cli/dist is missing: run bash scripts/setup.sh first" >&2; exit 1; }
packs=$(mktemp -d "${TMPDIR:-/tmp}/cage-packs.XXXXXX")
trap 'rm -rf "$packs"' EXIT
for dir in packages/* apps/*; do
  [ -f "$dir/package.json" ] || continue
  node -e 'process.exit(require(process.argv[1]).private ? 1 : 0)' "$PWD/$dir/package.json" || continue
  (cd "$dir" && pnpm pack --pack-destination "$packs" >/dev/null)
done
# node-pty builds from source against the installed Node headers (no downloads).
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
npm install -g "${prefix[@]}" --no-fund --no-audit --loglevel=error "$packs"/*.tgz >/dev/null
bin="$(npm prefix -g "${prefix[@]}")/bin/cage"
[ "${#prefix[@]}" -gt 0 ] && bin="${prefix[1]}/bin/cage"
echo "install: $("$bin" --version) installed as $bin" >&2
