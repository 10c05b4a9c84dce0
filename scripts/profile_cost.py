#!/usr/bin/env python3
"""What the profile accounting (Config::profile, docs/metrics.md) costs NEXMark q0.

Usage: scripts/profile_cost.py BASE_BIN NEW_BIN [--rounds R] [--events N] [--shards S]

Runs `rill-bench run --query q0 --events N --shards S --json --quiet` with three variants:
`base` (BASE_BIN, a build without the change), `on` (NEW_BIN) and `off` (NEW_BIN
--no-profile), rotated in each round (base/on/off, on/off/base, off/base/on) so that a
change in the machine's load hits each alike. Prints every run (throughput in M events/s,
CPU time per event in ns, the load average) and the medians. docs/results.md, "The cost of
profiling", has the figures.
"""
import argparse
import json
import resource
import statistics
import subprocess

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("base")
parser.add_argument("new")
parser.add_argument("--rounds", type=int, default=9)
parser.add_argument("--events", type=int, default=30_000_000)
parser.add_argument("--shards", type=int, default=2)
args = parser.parse_args()

variants = {"base": [args.base], "on": [args.new], "off": [args.new, "--no-profile"]}
order = ["base", "on", "off"]
results = {name: {"throughput": [], "cpu_ns": []} for name in order}
for i in range(args.rounds):
    for name in order[i % 3:] + order[: i % 3]:
        binary, *extra = variants[name]
        cmd = [binary, "run", "--query", "q0", "--events", str(args.events),
               "--shards", str(args.shards), "--json", "--quiet", *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        throughput = json.loads(out)["throughput"] / 1e6
        cpu_ns = cpu * 1e9 / args.events
        results[name]["throughput"].append(throughput)
        results[name]["cpu_ns"].append(cpu_ns)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"{name:4} {throughput:7.3f} M/s {cpu_ns:7.1f} ns/event  load {load}", flush=True)
for name in order:
    r = results[name]
    print(f"{name:4} median {statistics.median(r['throughput']):7.3f} M events/s, "
          f"{statistics.median(r['cpu_ns']):7.1f} ns of CPU per event ({len(r['throughput'])} runs)")
