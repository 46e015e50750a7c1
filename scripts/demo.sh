#!/usr/bin/env bash
# The main job on a real file: encrypt ~200 MB of real bytes (two copies of the node
# executable) with a live progress bar, kill -9 the encryption midway, resume it, decrypt,
# check the round trip byte for byte, and read 1 MiB from the middle with --range.
set -euo pipefail
cd "$(dirname "$0")/.."
cage() { node apps/cli/dist/bin.js "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cage-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
node_bin=$(command -v node)
cat "$node_bin" "$node_bin" > "$work/input.bin"
size=$(stat -c %s "$work/input.bin")
echo "== input: $work/input.bin, $size bytes (two copies of $node_bin)"

cage keygen -o "$work/demo.key"

echo "== encrypt, then kill -9 once a checkpoint covers a third of the input"
# Started directly (not through the shell function) so $! is the node process itself.
node apps/cli/dist/bin.js encrypt --key "$work/demo.key" --checkpoint-interval 200 "$work/input.bin" &
pid=$!
ckpt="$work/input.bin.agcm.cage-checkpoint"
for _ in $(seq 1 3000); do
  done_bytes=$(grep -o '"inputBytes":[0-9]*' "$ckpt" 2>/dev/null | cut -d: -f2 || true)
  [ -n "$done_bytes" ] && [ "$done_bytes" -ge $((size / 3)) ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.01
done
if kill -9 "$pid" 2>/dev/null; then
  wait "$pid" 2>/dev/null || true
  echo
  echo "== killed (kill -9); the checkpoint says:"
  cage chunk inspect "$work/input.bin.agcm.cage-checkpoint"
  echo "== run the same command again: it resumes"
  cage encrypt --key "$work/demo.key" "$work/input.bin"
else
  wait "$pid"
  echo "== the encryption finished before it could be interrupted"
fi
test ! -e "$work/input.bin.agcm.partial"
cage chunk inspect "$work/input.bin.agcm"

echo "== decrypt and compare"
cage decrypt --key "$work/demo.key" -o "$work/roundtrip.bin" "$work/input.bin.agcm"
cmp "$work/input.bin" "$work/roundtrip.bin"
sha256sum "$work/input.bin" "$work/roundtrip.bin"

echo "== decrypt 1 MiB from the middle with --range"
mid=$((size / 2))
cage decrypt --key "$work/demo.key" --range "$mid:$((mid + 1048576))" -o "$work/range.bin" "$work/input.bin.agcm"
cmp "$work/range.bin" <(tail -c +$((mid + 1)) "$work/input.bin" | head -c 1048576)
echo "== OK: encrypted, interrupted, resumed, decrypted and verified byte for byte"
