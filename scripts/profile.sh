#!/usr/bin/env bash
# Profiles rill-bench with perf: a flame graph and the hottest functions.
#
# Usage: scripts/profile.sh [rill-bench args...]
#   scripts/profile.sh                                   # run --query q5 --seconds 10
#   scripts/profile.sh exchange --rate 0 --shards 1      # any rill-bench arguments
#
# Builds the release binary (the release profile keeps line tables, debug = 1), samples it
# with `perf record -F 999 -g --call-graph dwarf` (frame pointers where perf cannot unwind
# with DWARF), and writes
#   target/profile/perf.data        the samples: perf report -i target/profile/perf.data
#   target/profile/flamegraph.svg   a flame graph, open it in a browser (needs inferno)
# then prints the functions with the most samples of their own.
#
# Needs perf (apt-get install linux-perf on Debian, linux-tools-$(uname -r) on Ubuntu),
# permission to use it (root, or sysctl kernel.perf_event_paranoid=1), and for the flame
# graph inferno (cargo install inferno). In a VM without hardware counters perf samples the
# cpu-clock timer instead of CPU cycles, which profiles just as well at this frequency.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
  set -- run --query q5 --seconds 10
fi

if ! command -v perf >/dev/null 2>&1 || ! perf --version >/dev/null 2>&1; then
  echo "profile.sh: perf is not installed (for this kernel):" >&2
  echo "  apt-get install linux-perf               # Debian" >&2
  echo "  apt-get install linux-tools-\$(uname -r)  # Ubuntu" >&2
  echo "  dnf install perf                         # Fedora" >&2
  exit 1
fi

flamegraph=yes
if ! command -v inferno-collapse-perf >/dev/null 2>&1 || ! command -v inferno-flamegraph >/dev/null 2>&1; then
  echo "profile.sh: inferno is not installed, so no flame graph (cargo install inferno); the top functions still follow" >&2
  flamegraph=no
fi

mkdir -p target/profile
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT

# Can perf sample at all here?
if ! perf record -F 999 -o "$probe/perf.data" -- true >"$probe/log" 2>&1; then
  paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo "?")
  if [ "$(id -u)" -ne 0 ] && grep -qiE "paranoid|permission|EACCES|EPERM" "$probe/log"; then
    echo "profile.sh: perf may not sample here: kernel.perf_event_paranoid is $paranoid." >&2
    echo "  Allow it with: sudo sysctl kernel.perf_event_paranoid=1 (or run as root)." >&2
  else
    echo "profile.sh: perf cannot sample on this machine (perf_event_paranoid is $paranoid):" >&2
    sed 's/^/  /' "$probe/log" | head -5 >&2
    echo "  Perf events are not supported in this VM or container: a container needs" >&2
    echo "  perf_event_open allowed by its seccomp profile (or --privileged), a VM a hypervisor" >&2
    echo "  that passes perf events through. Profile on the host or on bare metal instead." >&2
  fi
  exit 1
fi

# DWARF unwinding gives full stacks through Rust code without frame pointers.
call_graph=(--call-graph dwarf)
if ! perf record -F 999 -g "${call_graph[@]}" -o "$probe/perf.data" -- true >"$probe/log" 2>&1; then
  echo "profile.sh: perf cannot unwind with DWARF here; using frame pointers. Stacks through Rust" >&2
  echo "  code stay shallow unless it is built with RUSTFLAGS=\"-C force-frame-pointers=yes\"." >&2
  call_graph=(--call-graph fp)
fi

cargo build --release -p rill-bench

data=target/profile/perf.data
echo "perf record -F 999 -g ${call_graph[*]} target/release/rill-bench $*" >&2
perf record -F 999 -g "${call_graph[@]}" -o "$data" -- target/release/rill-bench "$@"

if [ "$flamegraph" = yes ]; then
  # Without the period field each sample counts once, so the graph counts samples. Resolving
  # inlined frames (addr2line) is the slow step: seconds for a 10 s run here.
  echo "writing target/profile/flamegraph.svg" >&2
  perf script -i "$data" -F comm,pid,tid,time,event,ip,sym,dso 2>/dev/null |
    inferno-collapse-perf |
    inferno-flamegraph --title "rill-bench $*" >target/profile/flamegraph.svg
fi

echo
echo "hottest functions (self time):"
perf report -i "$data" --no-children --sort symbol -g none --percent-limit 0.5 --stdio 2>/dev/null |
  grep -E '^ +[0-9.]+%' | sed -E 's/([[:space:]]+-)*[[:space:]]*$//' | awk 'NR <= 25'
echo
echo "samples:      $data (perf report -i $data)"
if [ "$flamegraph" = yes ]; then
  echo "flame graph:  target/profile/flamegraph.svg"
fi
