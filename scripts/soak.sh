#!/usr/bin/env bash
# Crash soak: runs a NEXMark query with exactly-once checkpoints and the transactional file
# sink, SIGKILLs it KILLS times at random moments (changing the shard count between 1 and
# SHARDS_MAX), lets it finish, and compares the committed rows with an uninterrupted run.
#   scripts/soak.sh                                   # q5, 100 kills, 20M events
#   QUERY=q7 KILLS=500 EVENTS=50000000 scripts/soak.sh
# The short version of this runs in the test suite (bench-harness/tests/crash.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cargo sort cmp shuf; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "soak.sh needs $tool on PATH" >&2
    exit 1
  fi
done
QUERY=${QUERY:-q5}
KILLS=${KILLS:-100}
EVENTS=${EVENTS:-20000000}
SHARDS_MAX=${SHARDS_MAX:-3}
INTERVAL=${INTERVAL:-100ms}
WORK=${WORK:-$(mktemp -d /tmp/rill-soak.XXXXXX)}
cargo build --release -p rill-bench
bin=target/release/rill-bench
common=(--query "$QUERY" --events "$EVENTS" --no-pin --quiet --window-size 1s --window-slide 500ms)
run=("${common[@]}" --guarantee exactly-once --checkpoint-dir "$WORK/ck"
  --checkpoint-interval "$INTERVAL" --output-dir "$WORK/out")
killed=0
for ((i = 0; i < KILLS; i++)); do
  shards=$(shuf -i 1-"$SHARDS_MAX" -n 1)
  delay_ms=$(shuf -i 100-1500 -n 1)
  "$bin" run "${run[@]}" --shards "$shards" >/dev/null 2>"$WORK/last.log" &
  pid=$!
  sleep "$(awk -v ms="$delay_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  if kill -9 "$pid" 2>/dev/null; then
    killed=$((killed + 1))
  fi
  wait "$pid" 2>/dev/null || true
  if grep -q "rill-bench:" "$WORK/last.log"; then
    echo "run $i failed:" >&2
    cat "$WORK/last.log" >&2
    exit 1
  fi
done
echo "killed $killed runs; finishing" >&2
"$bin" run "${run[@]}" --shards 2
"$bin" run "${common[@]}" --shards 2 --output "$WORK/reference.csv" >/dev/null
tail -n +2 "$WORK/reference.csv" | sort >"$WORK/reference.sorted"
for f in "$WORK"/out/part-*.csv; do tail -n +2 "$f"; done | sort >"$WORK/committed.sorted"
if cmp -s "$WORK/reference.sorted" "$WORK/committed.sorted"; then
  echo "OK: $(wc -l <"$WORK/committed.sorted") rows identical to the uninterrupted run after $killed kills" >&2
  rm -rf "$WORK"
else
  echo "MISMATCH: see $WORK (reference.sorted vs committed.sorted)" >&2
  exit 1
fi
