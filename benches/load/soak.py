#!/usr/bin/env python3
"""Prints callvault's resident memory once a minute over a long load run.

Usage: soak.py RUN_DIR [BASE_MINUTE]

RUN_DIR is a run of benches/load/run.sh, usually with a long --hold. Minute 0
is the end of the ramp, when every call is up; for each whole minute after it
while the calls last, the sample nearest that moment gives VmRSS. The last
line compares the final minute with BASE_MINUTE (5 unless given): the soak's
target is that memory at the end is within 5 % of memory at minute 5.
Writes RUN_DIR/soak.json too.
"""

import json
import os
import sys

TOLERANCE = 0.05


def nearest(samples, wall):
    best = min(samples, key=lambda s: abs(s["wall"] - wall))
    return best if abs(best["wall"] - wall) <= 2 else None


def series(run):
    with open(os.path.join(run, "meta.json")) as file:
        meta = json.load(file)
    with open(os.path.join(run, "uac_start_wall")) as file:
        start = float(file.read()) + meta["ramp_s"]
    with open(os.path.join(run, "samples.jsonl")) as file:
        samples = [json.loads(line) for line in file if line.strip()]
    samples = [s for s in samples if "callvault" in s["processes"]]
    minutes = (meta["hold_s"] - meta["ramp_s"]) // 60
    rows = []
    for minute in range(minutes + 1):
        sample = nearest(samples, start + 60 * minute)
        if sample is None:
            continue
        process = sample["processes"]["callvault"]
        rows.append({"minute": minute, "rss_kb": process["rss_kb"], "hwm_kb": process["hwm_kb"]})
    return meta, rows


def main():
    run = sys.argv[1]
    base_minute = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    meta, rows = series(run)
    by_minute = {row["minute"]: row["rss_kb"] for row in rows}
    if base_minute not in by_minute or not rows:
        sys.exit(f"no sample at minute {base_minute}")
    base, last = by_minute[base_minute], rows[-1]
    change = (last["rss_kb"] - base) / base
    print(f"{meta['calls']} calls, {meta['hold_s']} s each, format {meta['format']}")
    print("| minute | VmRSS kB | VmHWM kB |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['minute']} | {row['rss_kb']} | {row['hwm_kb']} |")
    verdict = "within" if abs(change) <= TOLERANCE else "NOT within"
    print(f"minute {last['minute']}: {last['rss_kb']} kB against {base} kB at minute "
          f"{base_minute}: {change * 100:+.2f} %, {verdict} 5 %")
    with open(os.path.join(run, "soak.json"), "w") as file:
        json.dump({"rows": rows, "base_minute": base_minute, "change": change}, file, indent=1)


if __name__ == "__main__":
    main()
