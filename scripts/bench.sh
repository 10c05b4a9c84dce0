#!/usr/bin/env bash
# Runs the sustainable-throughput sweep for each NEXMark query and writes docs/results.md:
# per query, the maximum sustainable events/s and p50/p95/p99 latency at 50 % of it.
#   scripts/bench.sh                          # every query, 10 s trials, every core
#   QUERIES="q0 q5" TRIAL_SECONDS=5 scripts/bench.sh
#   SHARDS=2 OUT=docs/results-2.md scripts/bench.sh
# Windowed queries (q5 q7 q8 q11 q12) get WINDOWED_TRIAL_SECONDS (default 12) per trial plus
# WARMUP (default 10s) left out of latency, so that several windows close in each trial.
# Raw sweep output (CSV per query) goes to target/bench/. RESUME=1 reuses the CSV of a query
# swept before (an interrupted run goes on where it stopped).
# Each query also runs open loop at FIXED_RATE events/s (default 1000000; empty: skip), the
# rate issue 24 sets latency targets at: `rill-bench run --rate FIXED_RATE --json`.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cargo awk git; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench.sh needs $tool on PATH" >&2
    exit 1
  fi
done
QUERIES=${QUERIES:-"q0 q1 q2 q3 q4 q5 q6 q7 q8 q11 q12"}
TRIAL_SECONDS=${TRIAL_SECONDS:-10}
WINDOWED_TRIAL_SECONDS=${WINDOWED_TRIAL_SECONDS:-12}
WARMUP=${WARMUP:-10s}
OUT=${OUT:-docs/results.md}
FIXED_RATE=${FIXED_RATE-1000000}
shard_flag=()
if [[ -n "${SHARDS:-}" ]]; then shard_flag=(--shards "$SHARDS"); fi
cargo build --release -p rill-bench
mkdir -p target/bench "$(dirname "$OUT")"
bin=target/release/rill-bench
rows=()
for q in $QUERIES; do
  case $q in
    q5 | q7 | q8 | q11 | q12) trial=(--seconds "$WINDOWED_TRIAL_SECONDS" --warmup "$WARMUP") ;;
    *) trial=(--seconds "$TRIAL_SECONDS") ;;
  esac
  csv=target/bench/sweep-$q.csv
  if [[ "${RESUME:-0}" == 1 && -s "$csv" ]]; then
    echo "reusing $csv" >&2
  else
    echo "sweeping $q (${trial[*]})..." >&2
    "$bin" sweep --query "$q" "${trial[@]}" "${shard_flag[@]}" --csv --quiet \
      --plot target/bench/plots >"$csv.tmp"
    mv "$csv.tmp" "$csv"
  fi
  # Columns: phase,percent,query,shards,events,rate,elapsed_s,throughput,rows,latency_kind,
  #          p50_us,p95_us,p99_us,p999_us,max_us,end_lag_ms,sustainable
  fixed="| |"
  if [[ -n "$FIXED_RATE" ]]; then
    json=target/bench/fixed-$q.json
    echo "$q open loop at $FIXED_RATE events/s..." >&2
    "$bin" run --query "$q" --rate "$FIXED_RATE" "${trial[@]}" "${shard_flag[@]}" --json \
      --quiet >"$json"
    fixed=$(awk -F'[:,]' '
      /"p50_us"/ { p50 = $2 } /"p95_us"/ { p95 = $2 } /"sustainable"/ { ok = $2 }
      END {
        gsub(/ /, "", ok); gsub(/ /, "", p50); gsub(/ /, "", p95)
        if (p50 == "null") { printf "| no rows |"; exit }
        printf "| %.1f / %.1f%s |", p50, p95, (ok == "true" ? "" : " (fell behind)")
      }' "$json")
  fi
  rows+=("$(awk -F, '
    $1 == "search" && $17 == "true" && $6 + 0 > max { max = $6 + 0 }
    $1 == "level" && $2 == "50" { shards = $4; kind = $10; p50 = $11; p95 = $12; p99 = $13 }
    END {
      if (max == 0) { printf "| %s | - | none found | | | | |", q; exit }
      printf "| %s | %s | %.2f M | %s | %.1f | %.1f | %.1f |", q, shards, max / 1e6, kind, p50, p95, p99
    }' q="$q" "$csv") ${fixed#| }")
done
{
  echo "# Measured results"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)"
  echo "($(nproc) cores: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))."
  echo "Command: \`QUERIES=\"$QUERIES\" TRIAL_SECONDS=$TRIAL_SECONDS WINDOWED_TRIAL_SECONDS=$WINDOWED_TRIAL_SECONDS WARMUP=$WARMUP scripts/bench.sh\`;"
  echo "each query runs \`rill-bench sweep --query qN --seconds $TRIAL_SECONDS --csv\`, windowed ones"
  echo "\`--seconds $WINDOWED_TRIAL_SECONDS --warmup $WARMUP\`. Raw output and charts: target/bench/."
  echo
  echo "Maximum sustainable rate: the highest open-loop rate at which the generator kept its"
  echo "schedule (ended at most max(50 ms, 1 %) late) and p95 latency did not grow from the"
  echo "first to the last quarter of the run (doubling from 500k events/s, then 4 bisections)."
  echo "Latency at 50 % of it, in µs: *event* = sink time minus the event's intended time;"
  echo "*window* = sink time minus the moment the window could ideally close."
  echo
  if [[ -n "$FIXED_RATE" ]]; then
    echo "Last column: p50 / p95 µs of \`rill-bench run --query qN --rate $FIXED_RATE\` with the"
    echo "same trial length (windowed: window latency)."
    echo
  fi
  echo "| query | shards | max sustainable events/s | latency | p50 µs | p95 µs | p99 µs | at ${FIXED_RATE:-(none)} events/s: p50 / p95 µs |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$OUT"
echo "wrote $OUT" >&2
