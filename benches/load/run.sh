#!/bin/bash
# Load benchmark: N concurrent SIPp calls with RTP both ways through callvault.
#
# Usage: benches/load/run.sh [--calls N] [--hold S] [--rate R] [--window S]
#                            [--pre S] [--format opus|wav] [--speech turns|both]
#                            [--stack callvault|rtpengine] [--delay]
#                            [--out DIR] [--no-build] [--binary PATH]
#
#   --calls N    concurrent calls (default 500)
#   --hold S     length of each call in seconds, RTP flowing throughout (30)
#   --rate R     calls started per second while ramping up (50)
#   --window S   length of the steady window measured once all N are up (15)
#   --pre S      seconds between the end of the ramp and the window (3)
#   --format F   what every call is recorded to: opus (the default) or wav
#   --speech S   turns: the parties take turns to speak (the default);
#                both: both speak all the time, the encoder's worst case
#   --stack S    callvault (the default), or rtpengine: Kamailio in front of
#                rtpengine (userspace forwarding, every call recorded to
#                pcap) and rtpengine's recording daemon, in callvault's place
#   --delay      also capture a sample of the RTP on loopback during the
#                window (tcpdump) and report the delay the relay adds
#   --out DIR    where the run's files go (benches/load/runs/<time>-n<N>)
#   --no-build   use the callvault binary already built
#   --binary P   run the callvault binary at P (implies --no-build)
#
# Builds callvault in release mode (honouring CARGO_TARGET_DIR), starts it on
# 127.0.0.1 with a generated config, plays the trunk with a SIPp UAS and the
# PBX with a SIPp UAC, samples CPU, memory and socket counters once a second,
# and prints the figures benches/README.md describes. Needs sipp (Debian
# package sip-tester), python3 and cargo; tcpdump for --delay; kamailio,
# kamailio-extra-modules, rtpengine-daemon and rtpengine-recording-daemon for
# --stack rtpengine. Everything it starts runs under `timeout` and is stopped
# by process id when it ends.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CALLS=500 HOLD=30 RATE=50 WINDOW=15 PRE=3 FORMAT=opus SPEECH=turns OUT="" BUILD=yes
STACK=callvault DELAY=no BINARY=""
IDLE=5      # seconds callvault runs idle before the first call, for the baseline
AFTER=3     # seconds sampled after the last call, to see memory come back
INTERVAL=1  # seconds between samples

usage() { sed -n 2,33p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --calls) CALLS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --pre) PRE=$2; shift 2 ;;
        --format) FORMAT=$2; shift 2 ;;
        --speech) SPEECH=$2; shift 2 ;;
        --stack) STACK=$2; shift 2 ;;
        --delay) DELAY=yes; shift ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=no; shift ;;
        --binary) BINARY=$2; BUILD=no; shift 2 ;;
        *) usage ;;
    esac
done

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "$*"; exit 1; }

RAMP=$(( (CALLS + RATE - 1) / RATE ))
if [ $(( RAMP + PRE + WINDOW + 1 )) -gt "$HOLD" ]; then
    die "--hold $HOLD is too short: the ramp ($RAMP s), --pre and --window must fit in it"
fi
case $STACK in
    callvault) NEEDED="sipp python3 cargo timeout" ;;
    rtpengine) NEEDED="sipp python3 timeout kamailio rtpengine rtpengine-recording"
               BUILD=no ;;
    *) die "--stack must be callvault or rtpengine, not $STACK" ;;
esac
[ $DELAY = yes ] && NEEDED="$NEEDED tcpdump"
for tool in $NEEDED; do
    command -v $tool >/dev/null || die "$tool is not on PATH (benches/README.md names its package)"
done

RUN=${OUT:-$HERE/runs/$(date -u +%Y%m%dT%H%M%SZ)-n$CALLS}
mkdir -p "$RUN/pids" "$RUN/data" || die "cannot create $RUN"
RUN=$(cd "$RUN" && pwd)
rm -f "$RUN/samples.jsonl" "$RUN/stop-sampler"

STARTED=()  # timeout wrappers we started, stopped on exit
cleanup() {
    local pid
    touch "$RUN/stop-sampler"
    for pid in "${STARTED[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    done
}
trap cleanup EXIT

# The process a `timeout` wrapper started (waits up to 5 s for the fork).
child_of() {
    local i child
    for i in $(seq 50); do
        child=$(cat /proc/$1/task/$1/children 2>/dev/null | awk '{print $1}')
        [ -n "$child" ] && { echo "$child"; return 0; }
        sleep 0.1
    done
    return 1
}

wait_for() {  # $1 = what, $2 = seconds, rest = command that succeeds when ready
    local what=$1 tries=$(( $2 * 10 ))
    shift 2
    while ! "$@"; do
        tries=$(( tries - 1 ))
        [ $tries -gt 0 ] || die "$what did not happen; see $RUN"
        sleep 0.1
    done
}

udp_bound() { ss -Hlun "sport = :$1" | grep -q .; }

# A sample of the RTP on both legs of the relay during the window, for
# delay.py: the packets from or to either SIPp whose sequence number is a
# multiple of 16 (the filter runs in the kernel, so few packets are copied).
capture_delay_sample() {
    sleep $(( RAMP + PRE ))
    timeout -s INT $WINDOW tcpdump -i lo -n -s 64 -B 65536 --time-stamp-precision=nano \
        -w delay.pcap "udp and (port $UAC_RTP or port $UAS_RTP) and udp[10:2] & 15 = 0" \
        > delay_capture.log 2>&1
}

# shellcheck source=rtpengine.sh
. "$HERE/rtpengine.sh"

if [ $BUILD = yes ]; then
    log "building callvault (release)"
    (cd "$REPO" && cargo build --release -p callvault) || die "build failed"
fi
BIN=${BINARY:-${CARGO_TARGET_DIR:-$REPO/target}/release/callvault}
[ $STACK = rtpengine ] || [ -x "$BIN" ] || die "no binary at $BIN; run without --no-build"

# rtpengine records to pcap whatever --format says; prepare.py still writes
# callvault's config (unused) and picks the ports.
[ $STACK = rtpengine ] && FORMAT=pcap
python3 "$HERE/prepare.py" "$RUN" "$CALLS" "${FORMAT/pcap/wav}" "$SPEECH" || die "cannot pick ports"
port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$RUN/ports.json" "$1"; }
PBX_LISTEN=$(port pbx_listen) UAC_SIP=$(port uac_sip) UAS_SIP=$(port uas_sip)
UAC_RTP=$(port uac_rtp) UAS_RTP=$(port uas_rtp)
if [ $STACK = callvault ]; then
    "$BIN" check-config "$RUN/callvault.toml" >/dev/null || die "generated config rejected"
    "$BIN" keys init --config "$RUN/callvault.toml" --operator load-benchmark >/dev/null 2>&1 \
        || die "cannot create the run's master key"
fi
cp "$HERE/uac_hold.xml" "$HERE/uas_hold.xml" "$RUN/"

# Four sockets per call in callvault, and SIPp's own.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
CAP=$(( RAMP + HOLD + 180 + CALLS * 2 ))   # no process outlives this many seconds

cat > "$RUN/meta.json" <<EOF
{"calls": $CALLS, "hold_s": $HOLD, "rate": $RATE, "ramp_s": $RAMP, "pre_s": $PRE,
 "window_s": $WINDOW, "idle_s": $IDLE, "interval_s": $INTERVAL,
 "command": "benches/load/run.sh --calls $CALLS --hold $HOLD --rate $RATE --window $WINDOW --pre $PRE --format $FORMAT --speech $SPEECH --stack $STACK",
 "format": "$FORMAT", "speech": "$SPEECH", "stack": "$STACK",
 "date": "$(date -u +%FT%TZ)", "kernel": "$(uname -r)", "cpus": $(nproc),
 "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')",
 "sipp": "$(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1)",
 "callvault_rev": "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)",
 "binary_built": "$(date -u -r "$BIN" +%FT%TZ)"}
EOF

cd "$RUN" || die "cannot enter $RUN"
if [ $STACK = callvault ]; then
    timeout -s TERM $CAP "$BIN" run --config "$RUN/callvault.toml" > callvault.log 2>&1 &
    T_CV=$!; STARTED+=($T_CV)
    P_CV=$(child_of $T_CV) || die "callvault did not start"
    echo $P_CV > pids/callvault
    wait_for "callvault start" 30 grep -q "callvault started" callvault.log
    log "callvault pid $P_CV, run directory $RUN"
else
    start_rtpengine_stack
fi

python3 "$HERE/sample.py" "$RUN" $INTERVAL &
T_SAMPLER=$!
sleep $IDLE

timeout -s INT $(( RAMP + HOLD + 90 )) sipp -sf uas_hold.xml -i 127.0.0.1 -p $UAS_SIP \
    -mi 127.0.0.1 -mp $UAS_RTP -m $CALLS -nostdin -buff_size 8388608 \
    -trace_screen -screen_file uas_screen.log -trace_stat -stf uas_stat.csv -fd 1 \
    -trace_err -error_file uas_errors.log > uas.out 2>&1 &
T_UAS=$!; STARTED+=($T_UAS)
P_UAS=$(child_of $T_UAS) || die "SIPp UAS did not start"
echo $P_UAS > pids/uas
wait_for "SIPp UAS bind" 10 udp_bound $UAS_SIP

python3 -c 'import time; print(time.time())' > uac_start_wall
timeout -s INT $(( RAMP + HOLD + 60 )) sipp 127.0.0.1:$PBX_LISTEN -sf uac_hold.xml \
    -s 01632960123 -i 127.0.0.1 -p $UAC_SIP -mi 127.0.0.1 -mp $UAC_RTP \
    -r $RATE -l $CALLS -m $CALLS -d $(( HOLD * 1000 )) -nostdin -buff_size 8388608 \
    -trace_screen -screen_file uac_screen.log -trace_stat -stf uac_stat.csv -fd 1 \
    -trace_err -error_file uac_errors.log > uac.out 2>&1 &
T_UAC=$!; STARTED+=($T_UAC)
P_UAC=$(child_of $T_UAC) || die "SIPp UAC did not start"
echo $P_UAC > pids/uac
log "$CALLS calls at $RATE/s, ${HOLD}s each: SIPp UAC pid $P_UAC, UAS pid $P_UAS"
if [ $DELAY = yes ]; then
    capture_delay_sample &
    T_CAPTURE=$!
fi

wait $T_UAC; echo $? > uac.rc
wait $T_UAS; echo $? > uas.rc
log "SIPp finished: UAC exit $(cat uac.rc), UAS exit $(cat uas.rc)"
# Ogg Opus recordings are transcoded from their live WAV after each call: wait
# until the queue is empty, so that the run covers all the work of recording.
python3 -c 'import time; print(time.time())' > calls_done_wall
queued() { ls "$RUN/data/transcode/queue" 2>/dev/null | wc -l; }
for i in $(seq $(( CALLS * 2 + 60 ))); do
    [ "$(queued)" -eq 0 ] && break
    sleep 1
done
python3 -c 'import time; print(time.time())' > transcoded_wall
log "transcoding queue: $(queued) left"
sleep $AFTER
touch stop-sampler
wait $T_SAMPLER

if [ $STACK = callvault ]; then
    kill -TERM $P_CV 2>/dev/null
    wait $T_CV; echo $? > callvault.rc
else
    stop_rtpengine_stack
fi
STARTED=()
python3 "$HERE/analyze.py" "$RUN" | tee result.txt
if [ $DELAY = yes ]; then
    wait $T_CAPTURE
    python3 "$HERE/delay.py" "$RUN" | tee -a result.txt
    grep -h "packets" delay_capture.log | sed 's/^/capture: /' | tee -a result.txt
fi
