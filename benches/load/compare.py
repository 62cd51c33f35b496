#!/usr/bin/env python3
"""Tabulates a compare.sh run: every stack's figures and callvault / rtpengine.

Usage: compare.py COMPARE_DIR

COMPARE_DIR holds one directory per run, named r<round>-<stack>, each with the
result.json of analyze.py and a file `label` naming the stack. Ratios are
taken within a round, against that round's rtpengine run, so both sides of a
ratio ran minutes apart under the same background load.
"""

import json
import os
import re
import sys

RUN_NAME = re.compile(r"r(?P<round>\d+)-")


def runs(root):
    found = []
    for name in sorted(os.listdir(root)):
        match = RUN_NAME.match(name)
        path = os.path.join(root, name, "result.json")
        if not match or not os.path.exists(path):
            continue
        with open(path) as file:
            result = json.load(file)
        with open(os.path.join(root, name, "label")) as file:
            result["label"] = file.read().strip()
        result["round"] = int(match["round"])
        found.append(result)
    return found


def loss(result):
    """Packets lost by the relay (kernel socket drops + its own) and the recorder."""
    packets, log = result["packets"], result["call_log"]
    relay = packets["callvault_socket_drops_run"] + sum(
        v for k, v in log.get("callvault_drops", {}).items() if k != "tap_drops")
    recorder = log.get("callvault_drops", {}).get("tap_drops", 0) + \
        result["recordings"]["lost_packets_logged"]
    return relay, recorder


def recordings(result):
    rec = result["recordings"]
    if rec.get("rtpengine_pcaps"):
        pcaps = rec["rtpengine_pcaps"]
        return f"{pcaps['pcaps']} pcap, {round(pcaps['spool'] / max(1, pcaps['pcaps']))} kB each"
    complete = rec["statuses_logged"].get("complete", 0)
    return f"{complete} complete, {rec['file_kb_per_call_minute']} kB/call-min"


def row(result, base):
    cpu, mem, uac = result["cpu"], result["memory"], result["sipp"]["uac"]
    relay, recorder = loss(result)
    live = cpu["callvault_cpu_s_per_call_minute"]
    whole = cpu["callvault_whole_run_cpu_s_per_call_minute"]
    ratio = lambda ours, theirs: f"{ours / theirs:.2f}" if base and theirs else "-"
    base_cpu = base["cpu"] if base else {}
    return (
        f"| {result['round']} | {result['label']} | {uac.get('successful')}/{result['meta']['calls']} | "
        f"{relay} + {recorder} | {recordings(result)} | {cpu['callvault_pct_core']} | {live} | {whole} | "
        f"{ratio(live, base_cpu.get('callvault_cpu_s_per_call_minute'))} | "
        f"{ratio(whole, base_cpu.get('callvault_whole_run_cpu_s_per_call_minute'))} | "
        f"{mem['rss_kb_per_call']} kB | "
        f"{round((cpu['uac_pct_core'] or 0) + (cpu['uas_pct_core'] or 0), 1)} | "
        f"{cpu['machine_other_pct_core']} |"
    )


def main():
    results = runs(sys.argv[1])
    if not results:
        sys.exit(f"no finished run in {sys.argv[1]}")
    first = results[0]["meta"]
    print(f"{first['calls']} calls of {first['hold_s']} s, {first['date']}, callvault "
          f"{first['callvault_rev']}")
    print("| round | stack | calls ok | lost: relay + recorder | recordings | % of one core "
          "| CPU-s per call-min, window | whole run | window / rtpengine | whole run / rtpengine "
          "| RSS per call | SIPp % | other processes % |")
    print("| --- " * 13 + "|")
    for result in results:
        base = next((r for r in results if r["round"] == result["round"]
                     and r["label"] == "rtpengine" and r is not result), None)
        print(row(result, base))


if __name__ == "__main__":
    main()
