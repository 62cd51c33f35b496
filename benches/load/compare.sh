#!/bin/bash
# Side by side: rtpengine and callvault under the same load, taking turns.
#
# Usage: benches/load/compare.sh [--calls N] [--hold S] [--rounds R]
#                                [--stacks "rtpengine wav opus"] [--out DIR]
#                                [--no-build] [-- more options for run.sh]
#
#   --calls N     concurrent calls in every run (default 500)
#   --hold S      length of every call in seconds (30)
#   --rounds R    how many times the stacks take their turn (2)
#   --stacks L    the runs of one round, in order (default "rtpengine wav opus"):
#                 rtpengine  Kamailio + rtpengine + its recording daemon (pcap)
#                 wav, opus  callvault recording every call to that format
#                 wav:PATH, opus:PATH  the same with the callvault binary at
#                 PATH (a copy of an earlier build), for before-and-after runs
#   --out DIR     where the runs go (benches/load/runs/compare-<time>-n<N>)
#   --no-build    use the callvault binary already built
#
# Each run is benches/load/run.sh with the same --calls and --hold, so every
# stack meets the same SIPp load, and taking turns means every stack sees the
# same background load from the rest of the machine. Prints a table with
# every run's figures and, per round, callvault's CPU per call-minute divided
# by rtpengine's (compare.py).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CALLS=500 HOLD=30 ROUNDS=2 STACKS="rtpengine wav opus" OUT="" BUILD=yes
usage() { sed -n 2,23p "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --calls) CALLS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --stacks) STACKS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-build) BUILD=no; shift ;;
        --) shift; break ;;
        *) usage ;;
    esac
done
log() { echo "[$(date +%T)] $*" >&2; }
die() { log "$*"; exit 1; }

OUT=${OUT:-$HERE/runs/compare-$(date -u +%Y%m%dT%H%M%SZ)-n$CALLS}
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
if [ $BUILD = yes ]; then
    (cd "$REPO" && cargo build --release -p callvault) || die "build failed"
fi
for stack in $STACKS; do
    case $stack in
        rtpengine|wav|opus) ;;
        wav:*|opus:*) [ -x "${stack#*:}" ] || die "no callvault binary at ${stack#*:}" ;;
        *) die "unknown stack $stack (rtpengine, wav, opus, wav:PATH or opus:PATH)" ;;
    esac
done

for round in $(seq "$ROUNDS"); do
    for stack in $STACKS; do
        dir="$OUT/r$round-$(echo "${stack%%:*}" | tr -c 'a-z0-9\n' _)"
        [ "$stack" = "${stack%%:*}" ] || dir="$dir-$(basename "${stack#*:}")"
        case $stack in
            rtpengine) args=(--stack rtpengine) ;;
            wav|opus) args=(--format "$stack") ;;
            *) args=(--format "${stack%%:*}" --binary "${stack#*:}") ;;
        esac
        log "round $round of $ROUNDS: $stack, $CALLS calls"
        "$HERE/run.sh" --calls "$CALLS" --hold "$HOLD" --no-build "${args[@]}" --out "$dir" "$@" \
            > "$dir.out" 2>&1 || log "run failed; see $dir.out"
        echo "$stack" > "$dir/label"
    done
done
python3 "$HERE/compare.py" "$OUT" | tee "$OUT/comparison.txt"
