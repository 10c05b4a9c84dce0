#!/usr/bin/env bash
# Counts the instructions rill-bench executes, with valgrind's callgrind.
#
# Usage: scripts/instructions.sh [rill-bench args...]
#   scripts/instructions.sh                          # run --query q1 --events 200000 --shards 1
#   scripts/instructions.sh exchange --events 100000 --rate 0 --shards 1
#
# Builds the release binary, runs it under `valgrind --tool=callgrind`, writes
# target/profile/callgrind.out, and prints the total instructions executed (Ir), the
# instructions per event when `--events N` is among the arguments, and the 20 functions
# that execute the most instructions themselves (inlined code counts to the function it
# was inlined into). Open the full profile with `callgrind_annotate` or `kcachegrind`.
#
# Instruction counts are nearly deterministic where wall-clock time is not (two runs of the
# default differed by 0.02 %), so they show a change in per-event cost without a quiet
# machine. Read them with care:
# - The total includes start-up and shutdown. For the marginal cost of an event, run two
#   event counts and divide the difference in Ir by the difference in events.
# - Use one shard: valgrind runs a program's threads one at a time, so shards that spin
#   waiting for each other burn instructions that say nothing about the code.
# - Under valgrind the program runs 20-50x slower, so open-loop runs at a target rate fall
#   behind; count instructions on unthrottled runs (exchange: --rate 0).
# - glommio drives its shards with io_uring. valgrind must pass io_uring_setup,
#   io_uring_enter and io_uring_register through to the kernel: valgrind 3.19 does (checked
#   with `exchange --events 100000 --rate 0 --shards 1`, which ran normally and counted
#   about 20.7 M instructions), while older versions report "unhandled syscall" and the
#   program fails to start its shards. The script recognises that failure and says so.
#
# Needs: valgrind with callgrind_annotate (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
  set -- run --query q1 --events 200000 --shards 1
fi

for tool in valgrind callgrind_annotate; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "instructions.sh: $tool is not installed: apt-get install valgrind (Debian/Ubuntu), dnf install valgrind (Fedora)" >&2
    exit 1
  fi
done

# 12345678 -> 12,345,678
group() { sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta' <<<"$1"; }

# The event count, for instructions per event.
events=""
prev=""
for arg in "$@"; do
  case "$arg" in
    --events=*) events="${arg#--events=}" ;;
    *) if [ "$prev" = "--events" ]; then events="$arg"; fi ;;
  esac
  prev="$arg"
done

cargo build --release -p rill-bench
mkdir -p target/profile
out=target/profile/callgrind.out
log=target/profile/callgrind.log
rm -f "$out"

echo "valgrind --tool=callgrind target/release/rill-bench $*" >&2
status=0
valgrind --tool=callgrind --dump-line=no --callgrind-out-file="$out" --log-file="$log" \
  target/release/rill-bench "$@" || status=$?

if [ "$status" -ne 0 ] || [ ! -s "$out" ]; then
  echo >&2
  echo "instructions.sh: rill-bench exited with status $status under valgrind (valgrind's log: $log)." >&2
  if grep -qE "unhandled .*syscall: *(425|426|427)\b|io_uring" "$log" 2>/dev/null; then
    echo "This valgrind ($(valgrind --version)) does not support io_uring, which glommio needs to run" >&2
    echo "rill's shards. Install a newer valgrind (3.19 works) or count instructions with" >&2
    echo "'perf stat -e instructions:u' on a machine with hardware counters." >&2
  elif grep -qE "unhandled .*syscall" "$log" 2>/dev/null; then
    grep -E "unhandled .*syscall" "$log" | sort -u | head -5 >&2
    echo "valgrind does not support a system call rill-bench makes; a newer valgrind may." >&2
  else
    echo "If rill-bench itself rejected the arguments, check them with: target/release/rill-bench --help" >&2
  fi
  exit 1
fi

total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out")
echo
echo "callgrind profile: $out"
echo "instructions (Ir): $(group "$total")"
if [ -n "$events" ] && [ "$events" -gt 0 ] 2>/dev/null; then
  awk -v ir="$total" -v n="$events" \
    'BEGIN { printf "instructions per event: %.1f (%d events; includes start-up and shutdown)\n", ir / n, n }'
fi

# callgrind_annotate lists "Ir (pct) file:function [object]" per source file of inlined
# code; add the rows up per function.
echo
echo "top 20 functions by instructions executed in them (self):"
callgrind_annotate --auto=no --tree=none --inclusive=no --threshold=100 "$out" |
  sed -n '/file:function/,$p' |
  grep -E '^ *[0-9,]+ +\( *[0-9.]+%\) ' |
  awk -v total="$total" '
    {
      ir = $1; gsub(/,/, "", ir)
      fn = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", fn)
      sub(/ \[[^]]*\]$/, "", fn)   # the object file
      sub(/^[^:]*:/, "", fn)        # the source file
      sum[fn] += ir
    }
    END { for (fn in sum) printf "%14d %6.2f%%  %s\n", sum[fn], 100 * sum[fn] / total, fn }
  ' | sort -rn | awk 'NR <= 20'
