#!/usr/bin/env bash
# Sets up a fresh machine that has only Node 20 and npm: pnpm, the age CLI, Chromium and
# PostgreSQL (Debian packages, for the age adapter's, the audit report's and the cluster's
# tests; the cluster tests start a throwaway server themselves), restic and jq (for
# `pnpm bench` only: the chunk store and the JSON validator are compared with them; no test
# needs them), the workspace's dependencies from the lockfile, and a build of every package.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1 || ! pnpm --version 2>/dev/null | grep -q '^10\.'; then
  echo "setup: installing pnpm 10 with npm" >&2
  npm install -g pnpm@10.34.9 >/dev/null
fi

missing=()
command -v age >/dev/null 2>&1 || missing+=(age)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# PostgreSQL's server binaries live off PATH, under /usr/lib/postgresql/<major>/bin.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: warning: ${missing[*]} missing and apt-get unavailable (age, chromium and postgresql are needed by the age, audit and cluster tests, restic and jq by pnpm bench)" >&2
  fi
fi

# node-pty builds from source: point node-gyp at the installed Node headers (no downloads).
export npm_config_nodedir="${npm_config_nodedir:-/usr}"
pnpm install --frozen-lockfile --reporter=silent
pnpm build --output-logs=errors-only
echo "setup: done" >&2
