#!/usr/bin/env python3
"""Turns one benchmark run's samples and logs into figures.

Usage: analyze.py RUN_DIR

Writes RUN_DIR/result.json and prints a readable summary ending in a row for
the results table in benches/README.md. What each figure means is described
there.
"""

import csv
import json
import os
import re
import statistics
import sys

HZ = os.sysconf("SC_CLK_TCK")
PACKETS_PER_SECOND = 50  # one 20 ms PCMU packet per direction per call

CALL_ENDED = re.compile(
    r"call ended reason=(?P<reason>\S+) .*?stats=SessionStats \{ "
    r"pbx_to_trunk: DirectionStats \{ packets: (?P<up>\d+), bytes: \d+.*?\}, "
    r"trunk_to_pbx: DirectionStats \{ packets: (?P<down>\d+), bytes: \d+.*?\}, "
    r"drops: Drops \{ stranger: (?P<stranger>\d+), malformed: (?P<malformed>\d+), "
    r"no_destination: (?P<no_destination>\d+), send_failed: (?P<send_failed>\d+) \}, "
    r"tap_drops: (?P<tap_drops>\d+)"
)

RECORDER_STOPPED = re.compile(
    r"recorder stopped started=(?P<started>\d+) complete=(?P<complete>\d+) "
    r"degraded=(?P<degraded>\d+) failed=(?P<failed>\d+) missed=(?P<missed>\d+)"
)
RECORDING_FINISHED = re.compile(r"recording finished.*? status=\"?(?P<status>[a-z]+)")
LOST_PACKETS = re.compile(r" lost_packets=(?P<lost>\d+)")


def load(run):
    with open(os.path.join(run, "meta.json")) as file:
        meta = json.load(file)
    with open(os.path.join(run, "samples.jsonl")) as file:
        samples = [json.loads(line) for line in file if line.strip()]
    with open(os.path.join(run, "uac_start_wall")) as file:
        meta["uac_start_wall"] = float(file.read())
    return meta, samples


def cpu_seconds(a, b, name):
    if name not in a["processes"] or name not in b["processes"]:
        return None
    return (b["processes"][name]["ticks"] - a["processes"][name]["ticks"]) / HZ


def pick_window(meta, samples):
    start = meta["uac_start_wall"] + meta["ramp_s"] + meta["pre_s"]
    end = start + meta["window_s"]
    inside = [s for s in samples if start <= s["wall"] <= end + 0.5]
    if len(inside) < 2:
        sys.exit("fewer than two samples in the steady window")
    idle = [s for s in samples if s["wall"] < meta["uac_start_wall"]]
    return idle[0], idle[-1], inside[0], inside[-1], inside


def dropped(sample, port_set):
    return sum(sample["ports"][port_set]["drops"].values())


def socket_drops_whole_run(samples, port_set):
    """Each socket's last drop count seen, summed: sockets close at call end."""
    last = {}
    for sample in samples:
        last.update(sample["ports"][port_set]["drops"])
    return sum(last.values())


def cpu_figures(meta, w0, w1, idle0, idle1, last):
    calls, span = meta["calls"], w1["t"] - w0["t"]
    result = {"window_s": round(span, 2)}
    for name in ("callvault", "uac", "uas"):
        seconds = cpu_seconds(w0, w1, name)
        result[f"{name}_pct_core"] = None if seconds is None else round(100 * seconds / span, 2)
    callvault = cpu_seconds(w0, w1, "callvault")
    result["callvault_cpu_s_per_call_minute"] = round(callvault / span * 60 / calls, 4)
    result["callvault_pct_core_per_call"] = round(100 * callvault / span / calls, 4)
    # From just before the first INVITE to a few seconds after the last BYE:
    # call set-up and tear-down included, spread over every call-minute.
    whole = cpu_seconds(idle1, last, "callvault")
    result["callvault_whole_run_cpu_s"] = round(whole, 2)
    result["callvault_whole_run_cpu_s_per_call_minute"] = round(
        whole / (calls * meta["hold_s"] / 60), 4)
    idle_span = idle1["t"] - idle0["t"]
    idle_cpu = cpu_seconds(idle0, idle1, "callvault")
    result["callvault_idle_pct_core"] = round(100 * idle_cpu / idle_span, 3) if idle_span else None
    result["sampler_pct_core"] = round(
        100 * (w1["self"]["ticks"] - w0["self"]["ticks"]) / HZ / span, 2)
    # The whole machine, from /proc/stat: user nice system idle iowait irq softirq steal.
    delta = [b - a for a, b in zip(w0["cpu"], w1["cpu"])]
    total = sum(delta[:8])
    cores = meta["cpus"]
    busy_cores = cores * (total - delta[3] - delta[4]) / total
    result["machine_busy_pct_core"] = round(100 * busy_cores, 1)
    ours = sum(result[k] or 0 for k in ("callvault_pct_core", "uac_pct_core",
                                        "uas_pct_core", "sampler_pct_core"))
    result["machine_other_pct_core"] = round(100 * busy_cores - ours, 1)
    result["machine_softirq_pct_core"] = round(100 * cores * delta[6] / total, 1)
    return result


def thread_figures(w0, w1):
    before = {tid: ticks for tid, _, ticks in w0.get("callvault_threads", [])}
    span = w1["t"] - w0["t"]
    rows = []
    for tid, name, ticks in w1.get("callvault_threads", []):
        used = ticks - before.get(tid, 0)
        if used:
            rows.append({"tid": tid, "name": name, "pct_core": round(100 * used / HZ / span, 2)})
    return sorted(rows, key=lambda row: -row["pct_core"])


def memory_figures(meta, idle1, w1, samples):
    rss = lambda s: s["processes"]["callvault"]["rss_kb"]
    in_window = [rss(s) for s in samples if w1["wall"] - meta["window_s"] - 1 <= s["wall"] <= w1["wall"]]
    steady = max(in_window)
    return {
        "rss_idle_kb": rss(idle1),
        "rss_steady_kb": steady,
        "rss_kb_per_call": round((steady - rss(idle1)) / meta["calls"], 1),
        "rss_after_kb": rss(samples[-1]),
        "rss_peak_kb": samples[-1]["processes"]["callvault"]["hwm_kb"],
    }


def packet_figures(meta, w0, w1, window, samples):
    span = w1["t"] - w0["t"]
    calls = meta["calls"]
    # SIPp never reads the RTP it is sent; its one media socket per side stays
    # full, so every packet callvault delivers to it is counted as a drop there.
    into_uac = dropped(w1, "uac_rtp") - dropped(w0, "uac_rtp")
    into_uas = dropped(w1, "uas_rtp") - dropped(w0, "uas_rtp")
    sockets = [s["ports"]["callvault"]["sockets"] for s in window]
    udp = {k: w1["udp"][k] - w0["udp"][k] for k in w1["udp"]}
    return {
        "relayed_pps": round((into_uac + into_uas) / span),
        "relayed_pps_expected": 2 * PACKETS_PER_SECOND * calls,
        "relayed_pps_to_pbx": round(into_uac / span),
        "relayed_pps_to_trunk": round(into_uas / span),
        "callvault_socket_drops_window": dropped(w1, "callvault") - dropped(w0, "callvault"),
        "callvault_socket_drops_run": socket_drops_whole_run(samples, "callvault"),
        "callvault_rx_queue_max_bytes": max(s["ports"]["callvault"]["rx_queue"] for s in window),
        "calls_with_media_in_window": [min(sockets) // 4, max(sockets) // 4],
        "machine_udp_window": {k: udp.get(k) for k in
                               ("InDatagrams", "OutDatagrams", "RcvbufErrors",
                                "SndbufErrors", "NoPorts", "InErrors")},
    }


def log_lines(run):
    """callvault's log; with --stack rtpengine there is none."""
    try:
        with open(os.path.join(run, "callvault.log"), errors="replace") as file:
            return file.readlines()
    except FileNotFoundError:
        return []


def rtpengine_recordings(run):
    """The pcap files rtpengine wrote, with --stack rtpengine."""
    figures = {}
    for name in ("pcaps.count", "spool.kb"):
        try:
            with open(os.path.join(run, name)) as file:
                figures[name.split(".")[0]] = int(file.read())
        except (OSError, ValueError):
            return None
    return figures


def call_log_figures(meta, run):
    expected = PACKETS_PER_SECOND * meta["hold_s"]
    calls, reasons, levels = [], {}, {}
    for line in log_lines(run):
        for level in ("WARN", "ERROR"):
            if f" {level} " in line:
                levels[level] = levels.get(level, 0) + 1
        found = CALL_ENDED.search(line)
        if found:
            calls.append({k: (v if k == "reason" else int(v))
                          for k, v in found.groupdict().items()})
            reasons[found["reason"]] = reasons.get(found["reason"], 0) + 1
    if not calls:
        return {"calls_ended": 0, "log_levels": levels}
    up = [c["up"] for c in calls]
    down = [c["down"] for c in calls]
    spread = lambda xs: [min(xs), round(statistics.median(xs), 1), max(xs)]
    drops = {k: sum(c[k] for c in calls) for k in
             ("stranger", "malformed", "no_destination", "send_failed", "tap_drops")}
    short = sum(1 for x in up + down if x < 0.99 * expected)
    return {
        "calls_ended": len(calls),
        "end_reasons": reasons,
        "packets_per_direction_expected": expected,
        "packets_pbx_to_trunk_min_median_max": spread(up),
        "packets_trunk_to_pbx_min_median_max": spread(down),
        "relayed_total": sum(up) + sum(down),
        "relayed_vs_expected_pct": round(100 * (sum(up) + sum(down)) / (2 * expected * len(calls)), 2),
        "directions_short_over_1pct": short,
        "callvault_drops": drops,
        "log_levels": levels,
    }


def read_wall(run, name):
    try:
        with open(os.path.join(run, name)) as file:
            return float(file.read())
    except (OSError, ValueError):
        return None


def transcoder_seconds(samples):
    """CPU seconds the transcoding thread used over the whole run."""
    last = {}
    for sample in samples:
        for tid, name, ticks in sample.get("callvault_threads", []):
            if name == "transcoder":
                last[tid] = ticks
    return round(sum(last.values()) / HZ, 2)


def recording_figures(meta, run, threads, samples):
    """What the recorder made of the calls: its counters, the files, its CPU."""
    stopped, statuses, lost = None, {}, 0
    for line in log_lines(run):
        found = RECORDER_STOPPED.search(line)
        if found:
            stopped = {k: int(v) for k, v in found.groupdict().items()}
        found = RECORDING_FINISHED.search(line)
        if found:
            statuses[found["status"]] = statuses.get(found["status"], 0) + 1
            found = LOST_PACKETS.search(line)
            lost += int(found["lost"]) if found else 0
    files = {"cvr": [0, 0], "part": [0, 0]}
    for root, _, names in os.walk(os.path.join(run, "data")):
        for name in names:
            kind = name.rsplit(".", 1)[-1]
            if kind in files:
                files[kind][0] += 1
                files[kind][1] += os.path.getsize(os.path.join(root, name))
    call_minutes = meta["calls"] * meta["hold_s"] / 60
    recorder_pct = sum(t["pct_core"] for t in threads if t["name"].startswith("recorder"))
    calls_done, transcoded = read_wall(run, "calls_done_wall"), read_wall(run, "transcoded_wall")
    transcoder_cpu = transcoder_seconds(samples)
    return {
        "format": meta.get("format"),
        "speech": meta.get("speech"),
        "recorder_counters": stopped,
        "statuses_logged": statuses,
        "lost_packets_logged": lost,
        "files": files["cvr"][0],
        "files_unfinished": files["part"][0],
        "file_kb_per_call_minute": round(files["cvr"][1] / 1024 / call_minutes, 1),
        "recorder_threads_pct_core": round(recorder_pct, 2),
        "relay_threads_pct_core": round(
            sum(t["pct_core"] for t in threads if t["name"].startswith("callvault")), 2),
        "transcoded_s_after_last_call": round(transcoded - calls_done, 1)
        if calls_done and transcoded else None,
        "transcoder_cpu_s": transcoder_cpu,
        "transcoder_cpu_s_per_call_minute": round(transcoder_cpu / call_minutes, 4),
        "rtpengine_pcaps": rtpengine_recordings(run),
    }


def sipp_figures(run, side, window):
    path = os.path.join(run, f"{side}_stat.csv")
    try:
        with open(path, newline="") as file:
            rows = list(csv.reader(file, delimiter=";"))
    except OSError:
        return {}
    header = rows[0]
    rows = [r for r in rows[1:] if len(r) >= len(header) - 1]
    column = lambda name: header.index(name)
    last = rows[-1]
    current = [int(r[column("CurrentCall")]) for r in rows]
    stamp = lambda r: float(r[column("CurrentTime")].split("\t")[-1])
    in_window = [int(r[column("CurrentCall")]) for r in rows
                 if window[0] <= stamp(r) <= window[1]]
    try:
        with open(os.path.join(run, f"{side}.rc")) as file:
            exit_code = int(file.read())
    except (OSError, ValueError):
        exit_code = None
    return {
        "exit": exit_code,
        "created": int(last[column("TotalCallCreated")]),
        "successful": int(last[column("SuccessfulCall(C)")]),
        "failed": int(last[column("FailedCall(C)")]),
        "retransmissions": int(last[column("Retransmissions(C)")]),
        "max_concurrent": max(current),
        "concurrent_in_window": [min(in_window), max(in_window)] if in_window else None,
    }


def summary(meta, r):
    cpu, mem, pkt, log = r["cpu"], r["memory"], r["packets"], r["call_log"]
    rec = r["recordings"]
    uac = r["sipp"]["uac"]
    drops = log.get("callvault_drops", {})
    app_drops = sum(v for k, v in drops.items() if k != "tap_drops")
    lines = [
        f"stack: {meta.get('stack', 'callvault')}; run: {meta['command']}  ({meta['date']}, {meta['cpus']} x {meta['cpu_model']}, "
        f"{meta['sipp']}, callvault {meta['callvault_rev']}, binary built "
        f"{meta.get('binary_built', '?')})",
        f"calls: UAC {uac.get('successful')}/{meta['calls']} ok, {uac.get('failed')} failed, "
        f"{uac.get('retransmissions')} SIP retransmissions, exit {uac.get('exit')}; "
        f"UAS exit {r['sipp']['uas'].get('exit')}; callvault logged {log['calls_ended']} "
        f"'call ended' {log.get('end_reasons')}",
        f"steady window: {cpu['window_s']} s, calls up (SIPp) {uac.get('concurrent_in_window')}, "
        f"calls with media in callvault {pkt['calls_with_media_in_window']}",
        f"callvault CPU: {cpu['callvault_pct_core']} % of one core = "
        f"{cpu['callvault_cpu_s_per_call_minute']} CPU-s per call-minute "
        f"({cpu['callvault_pct_core_per_call']} % per call); idle {cpu['callvault_idle_pct_core']} %; "
        f"whole run {cpu['callvault_whole_run_cpu_s']} CPU-s = "
        f"{cpu['callvault_whole_run_cpu_s_per_call_minute']} per call-minute",
        "callvault threads: " + ", ".join(f"{t['name']}/{t['tid']} {t['pct_core']} %"
                                          for t in r["threads"][:6]),
        f"SIPp CPU: UAC {cpu['uac_pct_core']} %, UAS {cpu['uas_pct_core']} % of one core; "
        f"sampler {cpu['sampler_pct_core']} %; machine busy {cpu['machine_busy_pct_core']} % "
        f"of one core ({meta['cpus']} cores), of which other processes {cpu['machine_other_pct_core']} %",
        f"memory: RSS idle {mem['rss_idle_kb']} kB, steady {mem['rss_steady_kb']} kB, "
        f"{mem['rss_kb_per_call']} kB per call, after {mem['rss_after_kb']} kB, peak {mem['rss_peak_kb']} kB",
        f"relayed: {pkt['relayed_pps']} packets/s in the window (expected {pkt['relayed_pps_expected']}:"
        f" {pkt['relayed_pps_to_trunk']} to the trunk, {pkt['relayed_pps_to_pbx']} to the PBX)",
        f"per call: {log.get('packets_pbx_to_trunk_min_median_max')} PBX->trunk, "
        f"{log.get('packets_trunk_to_pbx_min_median_max')} trunk->PBX packets "
        f"(min/median/max; expected {log.get('packets_per_direction_expected')} each); "
        f"{log.get('relayed_vs_expected_pct')} % of expected; "
        f"{log.get('directions_short_over_1pct')} directions short by more than 1 %",
        f"loss: kernel drops at callvault's sockets {pkt['callvault_socket_drops_run']} "
        f"(window {pkt['callvault_socket_drops_window']}, deepest queue "
        f"{pkt['callvault_rx_queue_max_bytes']} B); callvault drops {drops}; "
        f"WARN/ERROR lines {log.get('log_levels')}",
        f"recordings ({rec['format']}, speech {rec['speech']}): recorder {rec['recorder_counters']}; finished "
        f"{rec['statuses_logged']}, lost packets {rec['lost_packets_logged']}; {rec['files']} "
        f"files ({rec['files_unfinished']} unfinished), {rec['file_kb_per_call_minute']} kB per "
        f"call-minute; in the window: recorder threads {rec['recorder_threads_pct_core']} %, "
        f"relay threads {rec['relay_threads_pct_core']} % of one core; transcoding done "
        f"{rec['transcoded_s_after_last_call']} s after the last call, "
        f"{rec['transcoder_cpu_s']} CPU-s = {rec['transcoder_cpu_s_per_call_minute']} per call-minute",
        f"rtpengine's pcap recordings: {rec['rtpengine_pcaps']}",
        "",
        "| date | calls | format, speech | calls ok | relayed pps (expected) | relayed / expected | "
        "socket + relay drops | tap drops | recordings complete | callvault % core | CPU-s per call-min | RSS idle / steady | "
        "RSS per call | SIPp UAC + UAS % core | other processes % core |",
        f"| {meta['date'][:10]} | {meta['calls']} | {rec['format']}, {rec['speech']} | "
        f"{uac.get('successful')}/{meta['calls']} | "
        f"{pkt['relayed_pps']} ({pkt['relayed_pps_expected']}) | "
        f"{log.get('relayed_vs_expected_pct')} % | "
        f"{pkt['callvault_socket_drops_run']} + {app_drops} | {drops.get('tap_drops')} | "
        f"{rec['statuses_logged'].get('complete', 0)}/{meta['calls']} | {cpu['callvault_pct_core']} | "
        f"{cpu['callvault_cpu_s_per_call_minute']} | "
        f"{round(mem['rss_idle_kb'] / 1024, 1)} / {round(mem['rss_steady_kb'] / 1024, 1)} MB | "
        f"{mem['rss_kb_per_call']} kB | {cpu['uac_pct_core']} + {cpu['uas_pct_core']} | "
        f"{cpu['machine_other_pct_core']} |",
    ]
    return "\n".join(lines)


def main():
    run = sys.argv[1]
    meta, samples = load(run)
    idle0, idle1, w0, w1, window = pick_window(meta, samples)
    threads = thread_figures(w0, w1)
    result = {
        "meta": meta,
        "cpu": cpu_figures(meta, w0, w1, idle0, idle1, samples[-1]),
        "threads": threads,
        "recordings": recording_figures(meta, run, threads, samples),
        "memory": memory_figures(meta, idle1, w1, samples),
        "packets": packet_figures(meta, w0, w1, window, samples),
        "call_log": call_log_figures(meta, run),
        "sipp": {side: sipp_figures(run, side, (w0["wall"], w1["wall"])) for side in ("uac", "uas")},
    }
    with open(os.path.join(run, "result.json"), "w") as file:
        json.dump(result, file, indent=1)
    print(summary(meta, result))


if __name__ == "__main__":
    main()
