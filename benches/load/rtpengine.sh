# Sourced by run.sh for --stack rtpengine: the stack a practice would pick
# instead of callvault, in callvault's place between the two SIPps.
#
# Kamailio is the SIP proxy between the SIPps; for each call it asks rtpengine
# (userspace forwarding, --table=-1) to relay the media and to record it.
# rtpengine's recording daemon runs beside them. Kamailio takes the port
# callvault's PBX side would listen on, and rtpengine callvault's media range.
#
# Recording: rtpengine hands calls to its recording daemon, which decodes and
# mixes them to WAV, only with --recording-method=proc, and proc needs the
# xt_RTPENGINE kernel module, which this machine's kernel cannot load. So the
# calls are recorded with --recording-method=pcap: rtpengine writes each
# call's packets, unencrypted, to a pcap file of its own, and the daemon idles.
# Turning those into WAV is work done later, elsewhere; it is not measured.

KAMAILIO_MODULES=/usr/lib/x86_64-linux-gnu/kamailio/modules
RTPENGINE_FLAGS="replace-origin replace-session-connection record-call=yes"

write_kamailio_config() {  # $1 = rtpengine's control (ng) port
    cat > kamailio.cfg <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:$PBX_LISTEN
mpath="$KAMAILIO_MODULES"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:$1")

request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (!loose_route()) {
            if (is_method("ACK") && t_check_trans()) { t_relay(); }
            exit;
        }
        if (is_method("BYE")) { rtpengine_delete(); }
        t_relay();
        exit;
    }
    if (is_method("INVITE")) {
        if (!rtpengine_offer("$RTPENGINE_FLAGS")) { sl_send_reply("503", "No media relay"); exit; }
        t_on_reply("ANSWERED");
    }
    record_route();
    \$du = "sip:127.0.0.1:$UAS_SIP";
    t_relay();
}

onreply_route[ANSWERED] {
    if (status =~ "^2" && has_body("application/sdp")) { rtpengine_answer("$RTPENGINE_FLAGS"); }
}
EOF
}

start_rtpengine_stack() {
    local ng
    ng=$(port trunk_listen)
    mkdir -p spool recordings
    write_kamailio_config "$ng"
    timeout -s TERM $CAP rtpengine --config-file=none --foreground --log-stderr --log-level=5 \
        --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:"$ng" \
        --port-min="$(port media_min)" --port-max="$(port media_max)" --delete-delay=0 \
        --recording-dir="$RUN/spool" --recording-method=pcap --recording-format=raw \
        --pidfile="$RUN/rtpengine.pid" > rtpengine.log 2>&1 &
    T_RTPE=$!; STARTED+=($T_RTPE)
    timeout -s TERM $CAP rtpengine-recording --config-file=none --foreground --log-stderr \
        --log-level=5 --table=0 --spool-dir="$RUN/spool" --output-dir="$RUN/recordings" \
        --output-format=wav --output-mixed --pidfile="$RUN/rtpengine-recording.pid" \
        > rtpengine-recording.log 2>&1 &
    T_REC=$!; STARTED+=($T_REC)
    wait_for "rtpengine's control socket" 10 udp_bound "$ng"
    timeout -s TERM $CAP kamailio -DD -E -m 64 -M 8 -f kamailio.cfg -P "$RUN/kamailio.pid" \
        > kamailio.log 2>&1 &
    T_KAM=$!; STARTED+=($T_KAM)
    wait_for "kamailio bind" 10 udp_bound "$PBX_LISTEN"
    # Their pid files, not the children of `timeout`: rtpengine's first child
    # is not the process that stays.
    P_RTPE=$(cat rtpengine.pid) P_REC=$(cat rtpengine-recording.pid) P_KAM=$(cat kamailio.pid)
    # The trailing + has the sampler count Kamailio's worker processes too.
    echo "$P_RTPE $P_REC $P_KAM+" > pids/callvault
    log "rtpengine pid $P_RTPE, recording daemon $P_REC, kamailio $P_KAM, run directory $RUN"
}

stop_rtpengine_stack() {
    local pid i
    kill -TERM "$P_KAM" "$P_REC" "$P_RTPE" 2>/dev/null
    for pid in $P_KAM $P_REC $P_RTPE; do
        for i in $(seq 100); do [ -d /proc/$pid ] || break; sleep 0.1; done
        if [ -d /proc/$pid ]; then
            log "$(cat /proc/$pid/comm) ($pid) still running 10 s after SIGTERM: SIGKILL"
            kill -KILL $pid 2>/dev/null
        fi
    done
    wait "$T_KAM" "$T_REC" "$T_RTPE"
    find spool -name '*.pcap' | wc -l > pcaps.count
    du -sk spool | cut -f1 > spool.kb
}
