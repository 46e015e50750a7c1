#!/usr/bin/env bash
# The main job on a real file: encrypt ~200 MB of real bytes (two copies of the node
# executable) with a live progress bar, kill -9 the encryption midway, run the same command
# again and show that it resumed, decrypt, check the round trip byte for byte, and read
# 1 MiB from the middle with --range.
#
# Every step it names is shown or the demo fails (exit 1, naming the step). The first
# encryption runs under --limit-rate (the input size / 4 per second: about 4 s on any
# machine, however fast), and the kill is triggered by progress (a checkpoint covering a
# third of the input), so at least 2.6 s of reading remain when it lands.
#
# Overrides (for tests): CAGE_DEMO_INPUT (a file to use instead), CAGE_DEMO_RATE (bytes/s).
set -euo pipefail
cd "$(dirname "$0")/.."
cage() { node apps/cli/dist/bin.js "$@"; }
fail() {
  echo "== FAILED: $1" >&2
  exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/cage-demo.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
shown=()

if [ -n "${CAGE_DEMO_INPUT:-}" ]; then
  cp "$CAGE_DEMO_INPUT" "$work/input.bin"
  echo "== input: $work/input.bin, a copy of $CAGE_DEMO_INPUT"
else
  node_bin=$(command -v node)
  cat "$node_bin" "$node_bin" > "$work/input.bin"
  echo "== input: $work/input.bin (two copies of $node_bin)"
fi
size=$(stat -c %s "$work/input.bin")
rate=${CAGE_DEMO_RATE:-$(( (size + 3) / 4 ))}
echo "   $size bytes; the first encryption reads at most $rate bytes/s (--limit-rate), so it lasts about $(( size / rate )) s"

cage keygen -o "$work/demo.key"
encrypt=(encrypt --key "$work/demo.key" --limit-rate "$rate" --checkpoint-interval 200 "$work/input.bin")
ckpt="$work/input.bin.agcm.cage-checkpoint"

echo "== encrypt, then kill -9 once a checkpoint covers a third of the input"
# Started directly (not through the shell function) so $! is the node process itself.
node apps/cli/dist/bin.js "${encrypt[@]}" &
pid=$!
covered=0
while kill -0 "$pid" 2>/dev/null; do
  covered=$(grep -o '"inputBytes":[0-9]*' "$ckpt" 2>/dev/null | cut -d: -f2 || true)
  [ -n "$covered" ] && [ "$covered" -ge $((size / 3)) ] && break
  sleep 0.01
done
kill -9 "$pid" 2>/dev/null || true
status=0
wait "$pid" 2>/dev/null || status=$?
pid=
echo
# 137 = 128 + SIGKILL: the process was killed, not finished.
[ "$status" -eq 137 ] || fail "interrupt: the encryption was not killed mid-run (it exited with status $status before the kill landed)"
[ -e "$work/input.bin.agcm" ] && fail "interrupt: the output was already published when the kill landed"
[ -s "$ckpt" ] && [ -e "$work/input.bin.agcm.partial" ] || fail "interrupt: no checkpoint and partial output were left to resume from"
echo "== killed with kill -9 mid-run; what the checkpoint says:"
cage chunk inspect "$ckpt"
shown+=("interrupted with kill -9 at $((covered * 100 / size))%")

echo "== run the same command again: it resumes"
cage "${encrypt[@]}" 2> >(tee "$work/rerun.err" >&2)
sleep 0.1 # let tee flush
grep -q "resuming from $ckpt: at chunk [1-9]" "$work/rerun.err" || fail "resume: the rerun did not report resuming from the checkpoint"
grep -q "resumed at chunk [1-9]" "$work/rerun.err" || fail "resume: the rerun's summary does not show a resumed run"
[ -e "$ckpt" ] && fail "resume: the checkpoint is still there after success"
[ -e "$work/input.bin.agcm.partial" ] && fail "resume: the partial output is still there after success"
cage chunk inspect "$work/input.bin.agcm"
shown+=("resumed from the checkpoint")

echo "== decrypt and compare"
cage decrypt --key "$work/demo.key" -o "$work/roundtrip.bin" "$work/input.bin.agcm"
cmp "$work/input.bin" "$work/roundtrip.bin" || fail "decrypt: the round trip differs from the input"
sha256sum "$work/input.bin" "$work/roundtrip.bin"
shown+=("decrypted and verified byte for byte")

echo "== decrypt 1 MiB from the middle with --range"
mid=$((size / 2))
cage decrypt --key "$work/demo.key" --range "$mid:$((mid + 1048576))" -o "$work/range.bin" "$work/input.bin.agcm"
cmp "$work/range.bin" <(tail -c +$((mid + 1)) "$work/input.bin" | head -c 1048576) || fail "range: the bytes differ from the input's"
shown+=("read 1 MiB from the middle with --range")

summary=$(printf '%s; ' "${shown[@]}")
echo "== OK: ${summary%; }"
