#!/usr/bin/env python3
"""Exactly-once q7 SIGKILLed, then one to three checkpoint files damaged, then restarted:
does the restart resume with output identical to an uninterrupted run, or refuse?

Each trial: a fresh directory; `rill-bench run --query q7 ... --guarantee exactly-once
--checkpoint-dir D --output-dir O` SIGKILLed at a random moment; 1-3 random files of the
complete checkpoints damaged (a bit flip, a truncation, a deletion, or two shard files
swapped); the same command run to its end. Prints one line per trial and the counts.

    python3 scripts/damaged_checkpoints.py [--trials 16] [--seed 1] [--bin target/release/rill-bench]
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def command(binary, root, events):
    return [binary, "run", "--query", "q7", "--events", str(events),
            "--guarantee", "exactly-once", "--checkpoint-dir", os.path.join(root, "ck"),
            "--checkpoint-interval", "40ms", "--output-dir", os.path.join(root, "out"),
            "--shards", "2", "--no-pin", "--quiet",
            "--window-size", "1s", "--window-slide", "500ms"]


def committed(out_dir):
    rows = []
    if not os.path.isdir(out_dir):
        return rows
    for name in os.listdir(out_dir):
        if name.startswith("."):
            continue
        with open(os.path.join(out_dir, name)) as f:
            rows.extend(f.read().splitlines()[1:])
    return sorted(rows)


def reference(binary, events, root):
    path = os.path.join(root, "reference.csv")
    subprocess.run([binary, "run", "--query", "q7", "--events", str(events), "--output", path,
                    "--shards", "2", "--no-pin", "--quiet",
                    "--window-size", "1s", "--window-slide", "500ms"],
                   check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return sorted(f.read().splitlines()[1:])


def checkpoint_files(ck):
    files = []
    for d in sorted(os.listdir(ck)):
        full = os.path.join(ck, d)
        if d.startswith("chk-") and os.path.exists(os.path.join(full, "MANIFEST")):
            files += [os.path.join(full, f) for f in sorted(os.listdir(full)) if f.endswith(".bin")]
    return files


def damage(rng, files):
    """Damages 1-3 of `files`; returns what was done."""
    done = []
    for path in rng.sample(files, min(len(files), rng.randint(1, 3))):
        if not os.path.exists(path):
            continue
        kind = rng.choice(["flip", "truncate", "delete", "swap"])
        if kind == "flip":
            with open(path, "r+b") as f:
                data = bytearray(f.read())
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
                f.seek(0)
                f.write(data)
        elif kind == "truncate":
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) * rng.randint(1, 9) // 10)
        elif kind == "delete":
            os.remove(path)
        else:
            others = [p for p in files if p != path and os.path.exists(p)]
            if not others:
                continue
            other = rng.choice(others)
            tmp = path + ".swap"
            os.rename(path, tmp)
            os.rename(other, path)
            os.rename(tmp, other)
        done.append(f"{kind} {os.path.relpath(path, os.path.dirname(os.path.dirname(path)))}")
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--bin", default="target/release/rill-bench")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    scratch = tempfile.mkdtemp(prefix="rill-damage-")
    ref = reference(args.bin, args.events, scratch)
    counts = {"identical": 0, "refused": 0, "different": 0}
    trial = 0
    while trial < args.trials:
        root = os.path.join(scratch, f"t{trial}")
        os.makedirs(root)
        child = subprocess.Popen(command(args.bin, root, args.events),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0))
        if child.poll() is not None:
            # It finished before the kill: not a trial.
            shutil.rmtree(root)
            continue
        child.send_signal(signal.SIGKILL)
        child.wait()
        files = checkpoint_files(os.path.join(root, "ck"))
        what = damage(rng, files) if files else []
        run = subprocess.run(command(args.bin, root, args.events),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            outcome = "refused"
        elif committed(os.path.join(root, "out")) == ref:
            outcome = "identical"
        else:
            outcome = "different"
        counts[outcome] += 1
        print(f"trial {trial}: {len(files)} files, damaged: {'; '.join(what) or 'none'} -> "
              f"{outcome}" + (f" ({run.stderr.strip().splitlines()[-1]})" if run.returncode else ""))
        shutil.rmtree(root)
        trial += 1
    print(f"{counts['identical']} identical, {counts['refused']} refused, "
          f"{counts['different']} different of {args.trials}")
    shutil.rmtree(scratch)
    return 1 if counts["different"] else 0


if __name__ == "__main__":
    sys.exit(main())
