#!/usr/bin/env bash
# CI: installs `cage` from the packed tarballs into a throwaway prefix (scripts/install.sh),
# then runs it from there: --version and a real encrypt/decrypt round trip. Removes the prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cage-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bash scripts/install.sh --prefix "$tmp/prefix"
cage="$tmp/prefix/bin/cage"
# Run from elsewhere, so nothing of this checkout is found by accident.
cd "$tmp"
"$cage" --version | grep -q '^cage v'
"$cage" --version --json | node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); if (!v.node || !v.openssl || !("age" in v)) process.exit(1)'
head -c 3000000 /dev/urandom > in.bin
"$cage" keygen -q -o k.key
"$cage" encrypt -q --key k.key in.bin
"$cage" decrypt -q --key k.key -o out.bin in.bin.agcm
cmp in.bin out.bin
echo "check-install: cage installed from the tarballs runs and round-trips ($("$cage" --version))"
