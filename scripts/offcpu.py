#!/usr/bin/env python3
"""Where a thread waits: reads `perf record -e sched:sched_switch -g -a`
output and sums, for every thread named COMM, the time from each switch
away from it to its next switch back, by the kernel stack it left on (and
the state it left in: S sleeping, D waiting on the disk, R preempted).
Usage: scripts/offcpu.py PERF_DATA COMM [ROWS]"""
import collections
import re
import subprocess
import sys

data, comm = sys.argv[1], sys.argv[2]
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 12
out = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True, check=True).stdout
switch = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)")
left, waits, first, last = {}, collections.defaultdict(list), None, None
for block in out.split("\n\n"):
    lines = block.strip().split("\n")
    m = switch.search(lines[0]) if lines else None
    if not m:
        continue
    at = float(re.search(r"\s([0-9]+\.[0-9]+):", lines[0]).group(1))
    first, last = first or at, at
    prev, prev_pid, state, nxt, next_pid = m.groups()
    if prev == comm:
        frames = [re.sub(r"^\s*[0-9a-f]+ ", "", l).split("+0x")[0] for l in lines[1:]]
        frames = [f for f in frames if not f.startswith(("__schedule", "schedule", "entry_SYSCALL", "do_syscall"))]
        left[prev_pid] = (at, f"{state} " + " < ".join(frames[:4]))
    if nxt == comm and next_pid in left:
        since, stack = left.pop(next_pid)
        waits[stack].append((at - since) * 1e3)
if first is None:
    sys.exit(f"no context switches in {data}: did perf record with -e sched:sched_switch -a?")
print(f"{comm}: off the CPU {sum(map(sum, waits.values())):.0f} ms of {(last - first) * 1e3:.0f} ms recorded")
for stack, ms in sorted(waits.items(), key=lambda kv: -sum(kv[1]))[:rows]:
    ms.sort()
    print(f"{sum(ms):8.1f} ms n={len(ms):6d} p50={ms[len(ms) // 2]:.3f} max={ms[-1]:.2f}  {stack[:200]}")
