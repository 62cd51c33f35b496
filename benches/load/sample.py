#!/usr/bin/env python3
"""Samples CPU, memory and UDP socket counters of a benchmark run, once a second.

Usage: sample.py RUN_DIR INTERVAL_S

Reads the process ids to watch from RUN_DIR/pids/<name> (callvault, uac, uas),
re-reading them every sample so that processes started later are picked up,
and the UDP port sets from RUN_DIR/ports.json. A file may name several
processes, whose figures are summed (with --stack rtpengine, "callvault" is
rtpengine, its recording daemon and Kamailio); a pid ending in + brings in the
process's descendants as they are at each sample. Appends one JSON object per
sample to RUN_DIR/samples.jsonl until RUN_DIR/stop-sampler exists.

Per process: utime+stime in clock ticks (all threads), VmRSS and VmHWM in kB.
Per callvault thread: name and ticks. Per port set: sockets bound in it, the
sum of their receive queues, and each socket's drop counter (packets the
kernel discarded because the socket's receive buffer was full), keyed by
inode so that a socket's count survives after it closes.
Whole machine: the /proc/stat cpu line and /proc/net/snmp Udp counters.
"""

import json
import os
import sys
import time


def read(path):
    with open(path) as file:
        return file.read()


def ticks(stat_text):
    # Fields after the command name, which may contain spaces: state is field 3,
    # utime and stime are fields 14 and 15.
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def process(pid):
    status = read(f"/proc/{pid}/status")
    memory = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            memory[key] = int(value.split()[0])
    return {
        "pid": pid,
        "ticks": ticks(read(f"/proc/{pid}/stat")),
        "rss_kb": memory.get("VmRSS", 0),
        "hwm_kb": memory.get("VmHWM", 0),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
    }


def children(pid):
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(child) for child in read(f"/proc/{pid}/task/{tid}/children").split()]
        except OSError:
            continue
    return found


def group(spec):
    """The pids a pids/ file names, with the descendants of those ending in +."""
    pids = []
    for word in spec.split():
        pid = int(word.rstrip("+"))
        pending = [pid]
        while pending:
            current = pending.pop()
            pids.append(current)
            if word.endswith("+"):
                try:
                    pending += children(current)
                except OSError:
                    continue
    return pids


def summed(pids):
    total = {"pid": pids[0], "ticks": 0, "rss_kb": 0, "hwm_kb": 0, "threads": 0}
    for pid in pids:
        try:
            one = process(pid)
        except (OSError, ValueError):
            continue
        for key in ("ticks", "rss_kb", "hwm_kb", "threads"):
            total[key] += one[key]
    return total


def threads(pid):
    result = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = read(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        result.append([int(tid), name, ticks(stat)])
    return result


def udp_sockets():
    """(local port, inode, rx_queue bytes, drops) of every IPv4 UDP socket."""
    rows = []
    for line in read("/proc/net/udp").splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].split(":")[1], 16)
        rx_queue = int(fields[4].split(":")[1], 16)
        rows.append((port, int(fields[9]), rx_queue, int(fields[12])))
    return rows


def port_sets(sets, sockets):
    result = {}
    for name, (low, high) in sets.items():
        inside = [s for s in sockets if low <= s[0] <= high]
        result[name] = {
            "sockets": len(inside),
            "rx_queue": sum(s[2] for s in inside),
            "drops": {str(s[1]): s[3] for s in inside if s[3]},
        }
    return result


def machine():
    cpu = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    udp = [line.split() for line in read("/proc/net/snmp").splitlines()
           if line.startswith("Udp:")]
    return cpu, dict(zip(udp[0][1:], map(int, udp[1][1:])))


def sample(run_dir, sets):
    record = {"t": time.monotonic(), "wall": time.time(), "processes": {}}
    for name in ("callvault", "uac", "uas"):
        try:
            pids = group(read(os.path.join(run_dir, "pids", name)))
            if not pids:
                continue
            record["processes"][name] = process(pids[0]) if len(pids) == 1 else summed(pids)
            if name == "callvault":
                record["callvault_threads"] = [t for pid in pids for t in threads(pid)]
        except (OSError, ValueError):
            continue
    record["self"] = {"ticks": ticks(read("/proc/self/stat"))}
    record["ports"] = port_sets(sets, udp_sockets())
    record["cpu"], record["udp"] = machine()
    return record


def main():
    run_dir, interval = sys.argv[1], float(sys.argv[2])
    with open(os.path.join(run_dir, "ports.json")) as file:
        sets = json.load(file)["sets"]
    stop = os.path.join(run_dir, "stop-sampler")
    out_path = os.path.join(run_dir, "samples.jsonl")
    next_at = time.monotonic()
    with open(out_path, "a") as out:
        while not os.path.exists(stop):
            out.write(json.dumps(sample(run_dir, sets)) + "\n")
            out.flush()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    main()
