#!/usr/bin/env bash
# Profiles the default benchmark (or the rill-bench arguments given) with perf and prints
# the hottest functions. Writes perf.data to target/profile/.
#   scripts/profile.sh                      # default benchmark
#   scripts/profile.sh exchange --rate 0    # any rill-bench arguments
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v perf >/dev/null 2>&1; then
  echo "perf is not installed: apt-get install linux-perf (Debian) or linux-tools-\$(uname -r) (Ubuntu)" >&2
  exit 1
fi
if ! perf stat -e task-clock true >/dev/null 2>&1; then
  echo "perf cannot record here: lower /proc/sys/kernel/perf_event_paranoid (e.g. sysctl kernel.perf_event_paranoid=1) or run as root" >&2
  exit 1
fi
cargo build --release -p rill-bench
mkdir -p target/profile
perf record -g -o target/profile/perf.data ./target/release/rill-bench "$@"
perf report -i target/profile/perf.data --no-children --percent-limit 1 --stdio | grep -E '^ +[0-9]' | head -40
echo "full report: perf report -i target/profile/perf.data"
