#!/usr/bin/env bash
# Background loopback capture for the interop tests.
#
#   tests/interop/capture.sh start PCAP [PORT...]   # returns once tshark is really capturing
#   ... run the traffic ...
#   tests/interop/capture.sh stop PCAP              # stops it and waits until PCAP is flushed
#   tests/interop/tshark_check.sh PCAP PORT...
#
# Without PORTs the capture filter is 'tcp or udp' (handy when the server port is
# only known after the capture must already be running, and for SIP/RTP, whose
# media ports are negotiated; the checks decode only the ports you give them
# anyway). With PORTs: 'tcp port A or tcp port B ...'.
# The tshark pid is kept in PCAP.pid and its log in PCAP.log.
#
# The equivalent by hand:
#   tshark -i lo -f 'tcp port N' -w /tmp/x.pcapng -q 2>/tmp/x.log &  pid=$!
#   until grep -q 'Capturing on' /tmp/x.log; do sleep 0.1; done
#   ...traffic...
#   kill -INT $pid; wait $pid
set -u

die() { echo "capture.sh: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: $0 start PCAP [PORT...] | stop PCAP"
cmd=$1
pcap=$2
shift 2
pidfile="$pcap.pid"
logfile="$pcap.log"

case $cmd in
start)
    command -v tshark >/dev/null 2>&1 || die "tshark not installed (run tests/interop/setup.sh)"
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "a capture for $pcap is already running (pid $(cat "$pidfile"))"
    fi
    filter="tcp or udp"
    if [ $# -gt 0 ]; then
        filter=""
        for port in "$@"; do
            case $port in ''|*[!0-9]*) die "bad port '$port'" ;; esac
            filter="${filter:+$filter or }tcp port $port"
        done
    fi
    rm -f "$pcap" "$logfile"
    # setsid: keep the capture alive/independent of the caller's job control.
    setsid tshark -n -i lo -f "$filter" -w "$pcap" -q >"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 100); do
        if grep -q 'Capturing on' "$logfile" 2>/dev/null; then
            # dumpcap has opened the interface; give the file header a moment.
            sleep 0.2
            echo "capture.sh: capturing on lo ($filter) -> $pcap (pid $pid)"
            exit 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$logfile" >&2; rm -f "$pidfile"; die "tshark exited early"; }
        sleep 0.1
    done
    kill -INT "$pid" 2>/dev/null
    cat "$logfile" >&2
    die "tshark did not start capturing within 10s"
    ;;
stop)
    [ -s "$pidfile" ] || die "no pid file $pidfile (capture not started?)"
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        # Let in-flight packets reach the ring buffer before stopping.
        sleep 0.3
        kill -INT "$pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            sleep 0.5
        fi
    fi
    rm -f "$pidfile"
    [ -s "$pcap" ] || die "capture file $pcap is missing or empty (see $logfile)"
    echo "capture.sh: stopped, $(grep -o '[0-9]* packets\? captured' "$logfile" | tail -1 || echo '? packets captured') -> $pcap"
    ;;
*)
    die "unknown command '$cmd' (start|stop)"
    ;;
esac
