#!/usr/bin/env python3
"""Measures the one-way delay the relay adds, from a loopback capture.

Usage: delay.py RUN_DIR

Reads RUN_DIR/delay.pcap, written by run.sh --delay: tcpdump on `lo` with
kernel timestamps in nanoseconds, keeping the SIPp RTP packets whose sequence
number is a multiple of 16 (a BPF filter, so the capture copies few packets).
Each such packet is seen twice, once on each leg of the relay: SIPp UAC to
callvault and callvault to the SIPp UAS (PBX to trunk), and SIPp UAS to
callvault and callvault to the SIPp UAC (trunk to PBX). The two sightings
share SSRC, sequence number and RTP timestamp, since callvault relays RTP
unchanged; the difference of their capture times is the relay's delay: the
kernel delivering the packet to callvault's socket, callvault waking, reading,
checking and sending it, up to the kernel handing it to the loopback device.

Prints percentiles per direction and together, and writes RUN_DIR/delay.json.
"""

import json
import os
import struct
import sys

PCAP_MICRO = 0xA1B2C3D4
PCAP_NANO = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
ETHERNET_HEADER = 14


def packets(path):
    """(time in ns, IPv4 datagram) of every record in a pcap file."""
    with open(path, "rb") as file:
        data = file.read()
    if len(data) < 24:
        return
    for order in ("<", ">"):
        magic, = struct.unpack(order + "I", data[:4])
        if magic in (PCAP_MICRO, PCAP_NANO):
            break
    else:
        sys.exit(f"{path} is not a pcap file")
    scale = 1 if magic == PCAP_NANO else 1000
    linktype, = struct.unpack(order + "I", data[20:24])
    skip = ETHERNET_HEADER if linktype == LINKTYPE_ETHERNET else 0
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(order + "IIII", data[offset:offset + 16])
        offset += 16
        frame = data[offset:offset + captured]
        offset += captured
        yield seconds * 1_000_000_000 + fraction * scale, frame[skip:]


def rtp_sighting(datagram):
    """((source port, destination port), (SSRC, sequence, timestamp)) or None."""
    if len(datagram) < 20 or datagram[0] >> 4 != 4 or datagram[9] != 17:
        return None
    header = (datagram[0] & 0x0F) * 4
    udp = datagram[header:]
    if len(udp) < 8 + 12 or udp[8] >> 6 != 2:
        return None
    source, destination = struct.unpack(">HH", udp[:4])
    sequence, timestamp, ssrc = struct.unpack(">HII", udp[10:20])
    return (source, destination), (ssrc, sequence, timestamp)


def pair(path, uac_rtp, uas_rtp):
    """Delays in ns per direction, and the sightings left unpaired."""
    # (direction, leg) by who sent it or who receives it.
    first_seen = {}
    for when, datagram in packets(path):
        sighting = rtp_sighting(datagram)
        if sighting is None:
            continue
        (source, destination), key = sighting
        if source == uac_rtp:
            leg = ("pbx_to_trunk", "in")
        elif destination == uas_rtp:
            leg = ("pbx_to_trunk", "out")
        elif source == uas_rtp:
            leg = ("trunk_to_pbx", "in")
        elif destination == uac_rtp:
            leg = ("trunk_to_pbx", "out")
        else:
            continue
        first_seen.setdefault((leg, key), when)
    delays = {"pbx_to_trunk": [], "trunk_to_pbx": []}
    unpaired = 0
    for ((direction, side), key), when in first_seen.items():
        if side != "in":
            continue
        out = first_seen.get(((direction, "out"), key))
        if out is None or out < when:
            unpaired += 1
        else:
            delays[direction].append(out - when)
    return delays, unpaired


def percentile(values, fraction):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def describe(values):
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_us": round(percentile(values, 0.50) / 1000, 1),
        "p90_us": round(percentile(values, 0.90) / 1000, 1),
        "p99_us": round(percentile(values, 0.99) / 1000, 1),
        "p999_us": round(percentile(values, 0.999) / 1000, 1),
        "max_us": round(max(values) / 1000, 1),
    }


def main():
    run = sys.argv[1]
    with open(os.path.join(run, "ports.json")) as file:
        ports = json.load(file)
    delays, unpaired = pair(os.path.join(run, "delay.pcap"), ports["uac_rtp"], ports["uas_rtp"])
    result = {direction: describe(values) for direction, values in delays.items()}
    result["both"] = describe(delays["pbx_to_trunk"] + delays["trunk_to_pbx"])
    result["unpaired"] = unpaired
    with open(os.path.join(run, "delay.json"), "w") as file:
        json.dump(result, file, indent=1)
    for name in ("pbx_to_trunk", "trunk_to_pbx", "both"):
        figures = result[name]
        if not figures["count"]:
            print(f"relay delay {name}: no packet paired")
            continue
        print(f"relay delay {name}: {figures['count']} packets, p50 {figures['p50_us']} us, "
              f"p90 {figures['p90_us']} us, p99 {figures['p99_us']} us, "
              f"p99.9 {figures['p999_us']} us, max {figures['max_us']} us")
    print(f"relay delay: {unpaired} sightings on the way in without one on the way out")


if __name__ == "__main__":
    main()
