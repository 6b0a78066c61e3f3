#!/usr/bin/env python3
"""Decode a capture with tshark and fail on broken SIP or RTP.

    tests/interop/sip_rtp_check.py PCAP --sip-port P [--media-port M --pt N]

Frames on the SIP port are decoded as SIP, frames on the media port as RTP
(heuristics off, so other traffic in the capture does not count). Fails
(exit 1) when
  - any such frame is malformed or carries an expert info of severity error;
  - no SIP message was decoded;
  - with --media-port: the RTP sent *to* the media port (the stream verigate
    sends to the peer) is missing or shorter than --min-packets, has more
    than one SSRC, a payload type other than --pt, a sequence number that
    does not go up by exactly 1, a timestamp that does not go up by a
    whole number of 160-sample frames (20 ms of 8 kHz audio), more than 2%
    of the stream's time skipped (a sender that woke too late skips frames:
    seq continues, the timestamp jumps), or packets not paced at 20 ms: the
    time they took must be within 2.5% of the audio they carry (20 ms per
    160 samples) and the median spacing within 1 ms of 20 ms (single late
    packets on a loaded machine are shown, not failed).
Prints what it decoded. Exit 2 = usage or tshark problem.
"""
import argparse
import statistics
import subprocess
import sys


def tshark(pcap, decode, *args):
    cmd = ["tshark", "-n", "-r", pcap, "-o", "rtp.heuristic_rtp:FALSE"] + decode + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        err = "\n".join(l for l in r.stderr.splitlines() if "Running as user" not in l)
        print(f"sip_rtp_check: tshark failed: {err}", file=sys.stderr)
        sys.exit(2)
    return [l for l in r.stdout.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--media-port", type=int)
    ap.add_argument("--pt", type=int, help="payload type the answer negotiated")
    ap.add_argument("--min-packets", type=int, default=50)
    a = ap.parse_args()
    decode = ["-d", f"udp.port=={a.sip_port},sip"]
    ports = f"udp.port == {a.sip_port}"
    if a.media_port:
        decode += ["-d", f"udp.port=={a.media_port},rtp"]
        ports = f"({ports} || udp.port == {a.media_port})"
    problems = []

    bad = tshark(a.pcap, decode, "-Y", f"{ports} && (_ws.malformed || _ws.expert.severity >= error)",
                 "-T", "fields", "-E", "separator= | ", "-e", "frame.number", "-e", "_ws.col.Protocol",
                 "-e", "_ws.col.Info", "-e", "_ws.expert.message")
    for line in bad:
        problems.append(f"malformed or expert error: {line}")

    sip = tshark(a.pcap, decode, "-Y", f"sip && udp.port == {a.sip_port}", "-T", "fields",
                 "-e", "sip.Method", "-e", "sip.Status-Code")
    if not sip:
        problems.append(f"no SIP decoded on port {a.sip_port}")
    counts = {}
    for line in sip:
        parts = [p for p in line.split("\t") if p]
        key = parts[0] if parts else "?"
        counts[key] = counts.get(key, 0) + 1
    print(f"sip_rtp_check: {len(sip)} SIP messages: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))

    if a.media_port:
        rows = tshark(a.pcap, decode, "-Y", f"rtp && udp.dstport == {a.media_port}", "-T", "fields",
                      "-e", "rtp.ssrc", "-e", "rtp.seq", "-e", "rtp.timestamp", "-e", "rtp.p_type",
                      "-e", "frame.time_epoch")
        pkts = []
        for r in rows:
            ssrc, seq, ts, pt, t = r.split("\t")
            pkts.append((ssrc, int(seq), int(ts), int(pt), float(t)))
        if len(pkts) < a.min_packets:
            problems.append(f"only {len(pkts)} RTP packets to port {a.media_port} (want >= {a.min_packets})")
        else:
            ssrcs = sorted({p[0] for p in pkts})
            if len(ssrcs) != 1:
                problems.append(f"{len(ssrcs)} SSRCs in one stream: {ssrcs}")
            pts = sorted({p[3] for p in pkts})
            if a.pt is not None and pts != [a.pt]:
                problems.append(f"payload types {pts}, negotiated {a.pt}")
            seq_breaks = [(i, p[1], q[1]) for i, (p, q) in enumerate(zip(pkts, pkts[1:]))
                          if (q[1] - p[1]) % 65536 != 1]
            steps = [(q[2] - p[2]) % (1 << 32) for p, q in zip(pkts, pkts[1:])]
            ts_breaks = [(i, st) for i, st in enumerate(steps) if st == 0 or st % 160 != 0]
            skipped = sum(st // 160 - 1 for st in steps if st % 160 == 0 and st > 160)
            if seq_breaks:
                problems.append(f"{len(seq_breaks)} sequence breaks, first at packet {seq_breaks[0]}")
            if ts_breaks:
                problems.append(f"{len(ts_breaks)} timestamp steps that are not whole 160-sample frames, first at packet {ts_breaks[0]}")
            frames = sum(steps) / 160 if steps else 0
            if skipped > 0.02 * max(frames, 1):
                problems.append(f"{skipped} frames skipped of {frames:.0f} (more than 2%)")
            deltas = [(q[4] - p[4]) * 1000 for p, q in zip(pkts, pkts[1:])]
            elapsed = (pkts[-1][4] - pkts[0][4]) * 1000
            per_frame = elapsed / max(frames, 1)
            median = statistics.median(deltas)
            print(f"sip_rtp_check: {len(pkts)} RTP packets to port {a.media_port}, SSRC {ssrcs[0]}, PT {pts}, "
                  f"{per_frame:.3f} ms per 20 ms frame sent, median spacing {median:.3f} ms, "
                  f"min {min(deltas):.3f} ms, max {max(deltas):.3f} ms, {skipped} frames skipped")
            if abs(per_frame - 20) > 0.5:
                problems.append(f"packets took {per_frame:.3f} ms per 20 ms frame, not 20 ms")
            if abs(median - 20) > 1:
                problems.append(f"median packet spacing {median:.3f} ms, not 20 ms")

    if problems:
        print(f"sip_rtp_check: FAIL ({a.pcap}):")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print("sip_rtp_check: OK")


if __name__ == "__main__":
    main()
