#!/usr/bin/env python3
"""ESME interop peer built on smpplib 2.2.4 (see requirements.txt).

    python smpplib_esme.py --host H --port P --control HOST:PORT \
        --system-id ID --password PW [--no-control] [--to MSISDN] [--from SRC]

Scenario (every step has its own deadline; the whole run is capped by
--total-timeout, default 28 s):
  1. bind_transceiver
  2. submit (registered_delivery=1)
       - GSM 03.38 text incl. extension-table chars (EUR, [ ], { }, ~ ^ | \\)
       - UCS-2 text (data_coding 8) with Chinese and an emoji (surrogate pair)
       - 3-part long GSM text split with smpplib.gsm.make_parts (UDH, esm_class 0x40)
     retrying a submit on 0x58 ESME_RTHROTTLED, then wait for a DLR for every
     submitted part (DLR may arrive before submit_sm_resp; the id is matched
     via receipted_message_id or the Appendix-B text, hex/decimal tolerant)
  3. GET http://CONTROL/inbox/{dest}: the three texts decoded correctly, the
     long one reassembled and present exactly once
  4. POST http://CONTROL/mo for a GSM, a UCS-2 and a long text; each must
     arrive as deliver_sm (reassembled from UDH/SAR when split) with the text
  5. unbind and wait for unbind_resp
Every deliver_sm is answered with deliver_sm_resp; enquire_link is answered;
an unknown command_id is answered with generic_nack/ESME_RINVCMDID (smpplib
itself raises UnknownCommandError and would not answer).

Steps 3 and 4 need the verigate simulator's control API; --no-control skips
them (only meant for running against tests/interop/npm/smsc.js).

Prints one JSON summary on stdout. Exit 0 only when all checks pass; otherwise
the failing checks are listed on stderr and the exit status is 1 (2 for usage
errors).
"""

import argparse
import json
import random
import re
import select
import signal
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

ESME_ROK = 0x00
ESME_RINVCMDID = 0x03
ESME_RTHROTTLED = 0x58

# Correct GSM 03.38 default alphabet + extension table, used for *decoding*
# (smpplib has an encoder only, and its table maps 0x5F to '`' instead of '§').
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[",
           0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}
assert len(GSM_BASIC) == 128


class TotalTimeout(Exception):
    pass


class StepFailed(Exception):
    pass


def log(msg):
    sys.stderr.write("[smpplib_esme] %s\n" % msg)
    sys.stderr.flush()


def gsm_decode(data):
    """Decode unpacked GSM 03.38 septets (one per octet, as used in SMPP)."""
    out = []
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x1B and i + 1 < len(data):
            nxt = data[i + 1]
            # Unknown extension: spec says show the basic-table character.
            out.append(GSM_EXT.get(nxt, GSM_BASIC[nxt] if nxt < 0x80 else "?"))
            i += 2
            continue
        out.append(GSM_BASIC[b] if b < 0x80 else "?")
        i += 1
    return "".join(out)


def decode_payload(data, data_coding):
    """Decode a short_message payload (UDH already removed)."""
    dc = data_coding or 0
    if dc == 0x00 or 0xF0 <= dc <= 0xF3:
        return gsm_decode(data)
    if dc == 0x01:
        return data.decode("ascii", "replace")
    if dc == 0x08:
        return data.decode("utf-16-be", "strict")
    return data.decode("latin-1")  # 0x03 Latin-1, binary and everything else


def split_udh(sm):
    """Return (udh_bytes, body, concat_info) for a UDHI payload."""
    if not sm:
        return b"", b"", None
    udhl = sm[0]
    udh = sm[1:1 + udhl]
    body = sm[1 + udhl:]
    concat = None
    i = 0
    while i + 2 <= len(udh):
        iei, iel = udh[i], udh[i + 1]
        val = udh[i + 2:i + 2 + iel]
        if iei == 0x00 and iel == 3:
            concat = (val[0], val[1], val[2])
        elif iei == 0x08 and iel == 4:
            concat = ((val[0] << 8) | val[1], val[2], val[3])
        i += 2 + iel
    return udh, body, concat


def to_text(v):
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("latin-1").rstrip("\x00")
    return str(v)


def id_match_level(submitted_id, dlr_id):
    """0 = no match, 3 = exact, 2 = same after stripping zeros, 1 = same number in other base."""
    a = submitted_id.strip().strip("\x00").lower()
    b = dlr_id.strip().strip("\x00").lower()
    if not a or not b:
        return 0
    if a == b:
        return 3
    if (a.lstrip("0") or "0") == (b.lstrip("0") or "0"):
        return 2
    hexre = re.compile(r"^[0-9a-f]+$")
    if hexre.match(a) and b.isdigit() and int(a, 16) == int(b):
        return 1
    if a.isdigit() and hexre.match(b) and int(a) == int(b, 16):
        return 1
    return 0


def parse_tlvs(raw, body_offset_end):
    """Return {tag: value-bytes} of the TLVs found after the mandatory part."""
    tlvs = {}
    pos = body_offset_end
    while pos + 4 <= len(raw):
        tag, length = struct.unpack(">HH", raw[pos:pos + 4])
        tlvs[tag] = raw[pos + 4:pos + 4 + length]
        pos += 4 + length
    return tlvs


def deliver_sm_tlv_offset(raw):
    """Offset of the first TLV in a raw deliver_sm/submit_sm PDU."""
    pos = 16
    pos = raw.index(b"\x00", pos) + 1          # service_type
    pos += 2
    pos = raw.index(b"\x00", pos) + 1          # source_addr
    pos += 2
    pos = raw.index(b"\x00", pos) + 1          # destination_addr
    pos += 3                                   # esm_class, protocol_id, priority_flag
    pos = raw.index(b"\x00", pos) + 1          # schedule_delivery_time
    pos = raw.index(b"\x00", pos) + 1          # validity_period
    pos += 4                                   # reg_delivery, replace, data_coding, sm_default_msg_id
    sm_length = raw[pos]
    return pos + 1 + sm_length


class Esme(smpplib.client.Client):
    """smpplib Client driven by an explicit pump loop with deadlines."""

    def __init__(self, host, port, **kw):
        super().__init__(host, port, timeout=5, allow_unknown_opt_params=True, **kw)
        self.responses = {}          # sequence -> response PDU
        self.delivered = []          # every deliver_sm received (dicts)
        self.unknown_commands = []   # (command_id, sequence) answered with generic_nack
        self.server_unbound = False
        self.closed = False

    # smpplib's read_pdu raises UnknownCommandError on an unknown command_id
    # (after consuming it) and never answers it; we answer with generic_nack.
    def read_pdu(self):
        raw_len = self._recv_exact(4)
        length = struct.unpack(">L", raw_len)[0]
        if length < 16 or length > 65536:
            raise smpplib.exceptions.PDUError("bad command_length %d" % length)
        raw = raw_len + self._recv_exact(length - 4)
        cmd_id, status, seq = struct.unpack(">LLL", raw[4:16])
        try:
            pdu = smpplib.smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=True)
        except smpplib.exceptions.UnknownCommandError:
            log("unknown command_id 0x%08x seq=%d -> generic_nack ESME_RINVCMDID" % (cmd_id, seq))
            self.unknown_commands.append({"command_id": "0x%08x" % cmd_id, "sequence": seq})
            if not cmd_id & 0x80000000:
                nack = smpplib.smpp.make_pdu("generic_nack", client=self, status=ESME_RINVCMDID)
                nack.sequence = seq
                self.send_pdu(nack)
            return None
        pdu.raw = raw
        if not pdu.is_error() and pdu.command in smpplib.consts.STATE_SETTERS:
            self.state = smpplib.consts.STATE_SETTERS[pdu.command]
        return pdu

    def pump(self, until, deadline, what):
        """Read and dispatch PDUs until until() is true; StepFailed on deadline."""
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepFailed("timed out waiting for %s" % what)
            if self.closed:
                raise StepFailed("connection closed while waiting for %s" % what)
            readable, _, _ = select.select([self._socket], [], [], min(remaining, 0.25))
            if not readable:
                continue
            try:
                pdu = self.read_pdu()
            except (smpplib.exceptions.ConnectionError, OSError) as e:
                self.closed = True
                raise StepFailed("connection lost while waiting for %s: %r" % (what, e))
            if pdu is not None:
                self.dispatch(pdu)
        return True

    def dispatch(self, pdu):
        cmd = pdu.command
        if cmd == "deliver_sm":
            self.on_deliver_sm(pdu)
        elif cmd == "enquire_link":
            resp = smpplib.smpp.make_pdu("enquire_link_resp", client=self)
            resp.sequence = pdu.sequence
            self.send_pdu(resp)
        elif cmd == "unbind":
            log("server sent unbind")
            resp = smpplib.smpp.make_pdu("unbind_resp", client=self)
            resp.sequence = pdu.sequence
            self.send_pdu(resp)
            self.server_unbound = True
        elif pdu.is_response():
            self.responses[pdu.sequence] = pdu
        else:
            log("unhandled %s (seq %d)" % (cmd, pdu.sequence))

    def on_deliver_sm(self, pdu):
        raw = pdu.raw
        esm = pdu.esm_class or 0
        sm = pdu.short_message or b""
        if not sm and getattr(pdu, "message_payload", None):
            sm = pdu.message_payload
        try:
            tlvs = parse_tlvs(raw, deliver_sm_tlv_offset(raw))
        except ValueError:
            tlvs = {}
        entry = {
            "seq": pdu.sequence,
            "esm_class": esm,
            "data_coding": pdu.data_coding or 0,
            "source_addr": to_text(pdu.source_addr),
            "destination_addr": to_text(pdu.destination_addr),
            "raw_sm": sm,
            "tlvs": tlvs,
            "is_dlr": (esm & 0x3C) in (0x04, 0x08, 0x10, 0x20),
            "received_at": time.monotonic(),
        }
        if entry["is_dlr"]:
            # Receipt text is ASCII in practice whatever data_coding says.
            text = sm.decode("latin-1")
            entry["text"] = text
            m = re.search(r"\bid:(\S+)", text, re.I)
            entry["text_id"] = m.group(1) if m else None
            m = re.search(r"\bstat:(\w+)", text, re.I)
            entry["stat"] = m.group(1).upper() if m else None
            m = re.search(r"\berr:(\w+)", text, re.I)
            entry["err"] = m.group(1) if m else None
            rid = tlvs.get(0x001E)
            entry["receipted_message_id"] = rid.rstrip(b"\x00").decode("latin-1") if rid is not None else None
            entry["receipted_nul_terminated"] = rid.endswith(b"\x00") if rid is not None else None
            entry["smpplib_receipted_message_id"] = to_text(getattr(pdu, "receipted_message_id", None)) or None
            entry["message_state"] = getattr(pdu, "message_state", None)
            log("DLR: %s (receipted_message_id=%r message_state=%r)"
                % (text, entry["receipted_message_id"], entry["message_state"]))
        else:
            udh, body, concat = (b"", sm, None)
            if esm & 0x40:
                udh, body, concat = split_udh(sm)
            if concat is None and 0x020C in tlvs and 0x020E in tlvs and 0x020F in tlvs:
                concat = (struct.unpack(">H", tlvs[0x020C][:2])[0] if len(tlvs[0x020C]) >= 2 else tlvs[0x020C][0],
                          tlvs[0x020E][0], tlvs[0x020F][0])
            entry["body"] = body
            entry["udh"] = udh.hex()
            entry["concat"] = concat
            log("deliver_sm (MO) from=%s dc=%d esm=0x%02x concat=%r len=%d"
                % (entry["source_addr"], entry["data_coding"], esm, concat, len(body)))
        self.delivered.append(entry)
        # Answer properly: same sequence, ESME_ROK, empty message_id.
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self, status=ESME_ROK)
        resp.sequence = pdu.sequence
        self.send_pdu(resp)

    def request(self, pdu, deadline, what):
        self.send_pdu(pdu)
        seq = pdu.sequence
        self.pump(lambda: seq in self.responses, deadline, what)
        return self.responses.pop(seq)


class Runner(object):
    def __init__(self, args):
        self.args = args
        self.checks = []
        self.submitted = []   # dicts: label, part, message_id, dlr
        self.mo_results = []
        self.inbox = None
        self.esme = None
        self.token = "%06d" % random.randint(0, 999999)
        self.dest = args.to or ("4477009%05d" % random.randint(0, 99999))

    def check(self, name, ok, detail=None):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        log("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if detail is None else ": %s" % (detail,)))
        return ok

    # ------------------------------------------------------------ texts
    def texts(self):
        t = self.token
        gsm = "GSM7 ext € [x] {y} ~ ^ | \\ and @£$¥ èéùìò ÄÖÑÜ äöñüà ΔΦΓΛΩ tok%s" % t
        ucs2 = "UCS2 中文短信测试 😀 emoji tok%s" % t
        sentence = "Long concatenated GSM message for interop testing; "
        long_text = "LONG tok%s: " % t
        while len(long_text) < 400:
            long_text += sentence
        long_text = long_text[:396] + " end"
        return gsm, ucs2, long_text

    # ------------------------------------------------------------ steps
    def bind(self):
        a = self.args
        e = self.esme = Esme(a.host, a.port)
        e.connect()
        pdu = smpplib.smpp.make_pdu("bind_transceiver", client=e, system_id=a.system_id,
                                    password=a.password, system_type="")
        resp = e.request(pdu, time.monotonic() + 5, "bind_transceiver_resp")
        ok = resp.command == "bind_transceiver_resp" and resp.status == ESME_ROK
        if not self.check("bind_transceiver", ok, "status=0x%02x system_id=%s" % (resp.status, to_text(getattr(resp, "system_id", None)))):
            raise StepFailed("bind failed")
        e.state = smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX

    def submit_one(self, label, part_no, short_message, data_coding, esm_class, deadline):
        a = self.args
        attempts = 0
        while True:
            attempts += 1
            pdu = smpplib.smpp.make_pdu(
                "submit_sm", client=self.esme,
                source_addr_ton=a.from_ton, source_addr_npi=a.from_npi, source_addr=a.src,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=self.dest,
                esm_class=esm_class, data_coding=data_coding,
                registered_delivery=1, short_message=short_message)
            resp = self.esme.request(pdu, deadline, "submit_sm_resp (%s part %d)" % (label, part_no))
            if resp.command == "generic_nack":
                raise StepFailed("generic_nack 0x%02x for submit_sm %s" % (resp.status, label))
            if resp.status == ESME_RTHROTTLED and attempts < 10 and time.monotonic() < deadline:
                log("%s part %d throttled (0x58), retrying" % (label, part_no))
                time.sleep(min(0.2 * attempts, 1.0))
                continue
            if resp.status != ESME_ROK:
                raise StepFailed("submit_sm %s part %d rejected with 0x%02x" % (label, part_no, resp.status))
            mid = to_text(resp.message_id)
            if not mid:
                raise StepFailed("submit_sm_resp for %s part %d has an empty message_id" % (label, part_no))
            self.submitted.append({"label": label, "part": part_no, "message_id": mid,
                                   "attempts": attempts, "data_coding": data_coding, "dlr": None})
            log("submitted %s part %d -> id %s (attempts %d)" % (label, part_no, mid, attempts))
            return mid

    def submit_all(self):
        gsm, ucs2, long_text = self.texts()
        deadline = time.monotonic() + 10

        gsm_bytes = smpplib.gsm.gsm_encode(gsm)
        self.submit_one("gsm", 1, gsm_bytes, smpplib.consts.SMPP_ENCODING_DEFAULT, 0x00, deadline)

        ucs2_bytes = ucs2.encode("utf-16-be")
        if not self.check("ucs2_has_surrogate_pair", b"\xd8\x3d\xde\x00" in ucs2_bytes):
            raise StepFailed("UCS-2 test text lost its surrogate pair")
        self.submit_one("ucs2", 1, ucs2_bytes, smpplib.consts.SMPP_ENCODING_ISO10646, 0x00, deadline)

        parts, encoding, esm_class = smpplib.gsm.make_parts(long_text)
        ok = len(parts) == 3 and encoding == smpplib.consts.SMPP_ENCODING_DEFAULT and esm_class == 0x40
        self.check("make_parts_3_udh", ok, "parts=%d encoding=%d esm_class=0x%02x udh=%s"
                   % (len(parts), encoding, esm_class, parts[0][:6].hex() if parts else None))
        if not ok:
            raise StepFailed("make_parts did not produce 3 UDH parts")
        for i, part in enumerate(parts, 1):
            self.submit_one("long", i, part, encoding, esm_class, deadline)
        self.check("submit_all_accepted", True, "%d submit_sm accepted" % len(self.submitted))

    def match_dlrs(self):
        dlrs = [d for d in self.esme.delivered if d["is_dlr"] and not d.get("matched")]
        for d in dlrs:
            cand_ids = [x for x in (d.get("receipted_message_id"), d.get("text_id")) if x]
            best, best_level = None, 0
            for s in self.submitted:
                if s["dlr"] is not None:
                    continue
                for cid in cand_ids:
                    lvl = id_match_level(s["message_id"], cid)
                    if lvl > best_level:
                        best, best_level = s, lvl
            if best is not None:
                best["dlr"] = d
                d["matched"] = True
        return all(s["dlr"] is not None for s in self.submitted)

    def wait_dlrs(self):
        try:
            self.esme.pump(self.match_dlrs, time.monotonic() + self.args.dlr_timeout, "DLRs")
        except StepFailed as e:
            missing = [s["message_id"] for s in self.submitted if s["dlr"] is None]
            self.check("dlr_all_received", False, "%s; no DLR for %s" % (e, missing))
            raise
        self.check("dlr_all_received", True, "%d DLRs" % len(self.submitted))
        stats = {s["message_id"]: s["dlr"]["stat"] for s in self.submitted}
        self.check("dlr_stat_delivrd", all(v == "DELIVRD" for v in stats.values()), stats)
        bad_tlv = [s["message_id"] for s in self.submitted
                   if s["dlr"]["receipted_message_id"] is not None and not s["dlr"]["receipted_nul_terminated"]]
        self.check("dlr_receipted_message_id_is_c_octet_string", not bad_tlv,
                   None if not bad_tlv else "not NUL-terminated (smpplib truncates the last char) for %s" % bad_tlv)

    def http(self, method, path, body=None):
        url = "http://%s%s" % (self.args.control, path)
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=3) as r:
            raw = r.read()
            return r.status, (json.loads(raw.decode("utf-8")) if raw.strip() else None)

    def get_inbox(self):
        last_err = None
        for msisdn in (self.dest, "+" + self.dest):
            try:
                status, doc = self.http("GET", "/inbox/" + urllib.parse.quote(msisdn, safe=""))
            except urllib.error.HTTPError as e:
                last_err = "HTTP %d for %s" % (e.code, msisdn)
                continue
            msgs = (doc or {}).get("messages") or []
            if msgs:
                return msisdn, msgs
            last_err = "no messages for %s" % msisdn
        return None, last_err

    def check_inbox(self):
        gsm, ucs2, long_text = self.texts()
        expected = [("gsm", gsm, 0, 1), ("ucs2", ucs2, 8, 1), ("long", long_text, 0, 3)]
        deadline = time.monotonic() + 4
        found = {}
        msgs = None
        while True:
            key, msgs = self.get_inbox()
            if key is not None:
                found = {label: [m for m in msgs if m.get("text") == text]
                         for label, text, _, _ in expected}
                if all(len(found[l]) >= 1 for l, _, _, _ in expected) and \
                        all(m.get("dlr_state") for l in found for m in found[l]):
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if key is None:
            self.check("inbox_reachable", False, msgs)
            return
        self.inbox = msgs
        for label, text, dc, parts in expected:
            hits = found.get(label, [])
            if len(hits) != 1:
                near = [m.get("text") for m in msgs if self.token in (m.get("text") or "")]
                self.check("inbox_%s_text_once" % label, False,
                           "expected exactly 1 message with text %r, found %d; texts with our token: %r"
                           % (text, len(hits), near))
                continue
            m = hits[0]
            self.check("inbox_%s_text_once" % label, True)
            self.check("inbox_%s_data_coding" % label, m.get("data_coding") == dc,
                       "data_coding=%r expected %d" % (m.get("data_coding"), dc))
            self.check("inbox_%s_parts" % label, m.get("parts") == parts,
                       "parts=%r expected %d" % (m.get("parts"), parts))
            self.check("inbox_%s_dlr_state" % label, m.get("dlr_state") == "DELIVRD",
                       "dlr_state=%r" % (m.get("dlr_state"),))

    def mo_text_of(self, entries):
        """Reassemble and decode a list of deliver_sm entries (same message)."""
        dc = entries[0]["data_coding"]
        if entries[0]["concat"]:
            entries = sorted(entries, key=lambda e: e["concat"][2])
        payload = b"".join(e["body"] for e in entries)
        return decode_payload(payload, dc)

    def collect_mo(self, since_index):
        """Group MO deliver_sm received after since_index into complete messages."""
        singles, groups = [], {}
        for e in self.esme.delivered[since_index:]:
            if e["is_dlr"]:
                continue
            if e["concat"]:
                ref, total, _ = e["concat"]
                groups.setdefault((e["source_addr"], ref, total), []).append(e)
            else:
                singles.append([e])
        complete = list(singles)
        for (src, ref, total), lst in groups.items():
            if len({x["concat"][2] for x in lst}) == total:
                complete.append(lst)
        return complete

    def check_mo(self):
        t = self.token
        mos = [
            ("gsm", "MO gsm € {ok} [x] tok%s" % t, 1),
            ("ucs2", "MO ucs2 你好 😀 tok%s" % t, 1),
            ("long", ("MO long tok%s " % t) + ("abcdefghij0123456789 " * 12) + "€ end", 2),
        ]
        mo_from = "+4477009%05d" % random.randint(0, 99999)
        for label, text, min_parts in mos:
            start = len(self.esme.delivered)
            try:
                status, _ = self.http("POST", "/mo", {"from": mo_from, "to": self.args.src, "text": text})
            except (urllib.error.URLError, OSError) as e:
                self.check("mo_%s_injected" % label, False, repr(e))
                continue
            self.check("mo_%s_injected" % label, 200 <= status < 300, "HTTP %d" % status)
            got = {}

            def arrived():
                for msg in self.collect_mo(start):
                    txt = self.mo_text_of(msg)
                    if txt == text:
                        got["msg"], got["text"] = msg, txt
                        return True
                return False

            try:
                self.esme.pump(arrived, time.monotonic() + self.args.mo_timeout, "MO %s deliver_sm" % label)
            except StepFailed as e:
                seen = []
                for msg in self.collect_mo(start):
                    try:
                        seen.append(self.mo_text_of(msg))
                    except UnicodeDecodeError as ue:
                        seen.append("<undecodable: %s>" % ue)
                self.check("mo_%s_received" % label, False, "%s; decoded MO texts seen: %r" % (e, seen))
                continue
            msg = got["msg"]
            src = msg[0]["source_addr"]
            self.mo_results.append({"label": label, "parts": len(msg), "data_coding": msg[0]["data_coding"],
                                    "source_addr": src, "udh": [m["udh"] for m in msg]})
            self.check("mo_%s_received" % label, True,
                       "parts=%d dc=%d from=%s" % (len(msg), msg[0]["data_coding"], src))
            self.check("mo_%s_parts" % label, len(msg) >= min_parts, "parts=%d" % len(msg))
            self.check("mo_%s_source_addr" % label, src.lstrip("+") == mo_from.lstrip("+"),
                       "source_addr=%r expected %r" % (src, mo_from))

    def unbind(self):
        e = self.esme
        if e is None or e.closed or e._socket is None:
            return
        if e.state not in (smpplib.consts.SMPP_CLIENT_STATE_BOUND_TX, smpplib.consts.SMPP_CLIENT_STATE_BOUND_RX,
                           smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX):
            return  # never bound: nothing to unbind
        if e.server_unbound:
            self.check("unbind_clean", False, "server unbound us first")
            return
        try:
            pdu = smpplib.smpp.make_pdu("unbind", client=e)
            resp = e.request(pdu, time.monotonic() + 3, "unbind_resp")
            self.check("unbind_clean", resp.command == "unbind_resp" and resp.status == ESME_ROK,
                       "%s status=0x%02x" % (resp.command, resp.status))
        except (StepFailed, smpplib.exceptions.PDUError, smpplib.exceptions.ConnectionError) as ex:
            self.check("unbind_clean", False, str(ex))

    def close(self):
        if self.esme is not None and self.esme._socket is not None:
            try:
                self.esme._socket.close()
            except OSError:
                pass
            self.esme._socket = None
            self.esme.state = smpplib.consts.SMPP_CLIENT_STATE_CLOSED

    # ------------------------------------------------------------ run
    def steps(self):
        try:
            self.bind()
            self.submit_all()
            self.wait_dlrs()
            if self.args.no_control:
                self.checks.append({"name": "control_api_checks", "ok": True,
                                    "detail": "skipped (--no-control)"})
            else:
                self.check_inbox()
                self.check_mo()
        except StepFailed as e:
            if not self.checks or self.checks[-1]["ok"]:
                self.check("step", False, str(e))
        self.unbind()

    def run(self):
        try:
            self.steps()
        except TotalTimeout:
            self.check("total_timeout", False, "run exceeded %ss" % self.args.total_timeout)
        except (smpplib.exceptions.ConnectionError, OSError) as e:
            self.check("connection", False, repr(e))
        except Exception as e:  # report, never hang or traceback-only
            self.check("unexpected_error", False, "%s: %s" % (type(e).__name__, e))
        finally:
            signal.alarm(0)
            self.close()
        return self.summary()

    def summary(self):
        failed = [c for c in self.checks if not c["ok"]]
        e = self.esme
        return {
            "ok": not failed and bool(self.checks),
            "failed": [c["name"] for c in failed],
            "checks": self.checks,
            "destination": self.dest,
            "submitted": [{"label": s["label"], "part": s["part"], "message_id": s["message_id"],
                           "attempts": s["attempts"],
                           "dlr_id": (s["dlr"] or {}).get("receipted_message_id") or (s["dlr"] or {}).get("text_id"),
                           "dlr_stat": (s["dlr"] or {}).get("stat")} for s in self.submitted],
            "mo": self.mo_results,
            "unknown_commands_nacked": e.unknown_commands if e else [],
            "deliver_sm_received": len(e.delivered) if e else 0,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--control", help="HOST:PORT of the simulator control API")
    ap.add_argument("--system-id", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--to", help="destination MSISDN (default: random 4477009xxxxx)")
    ap.add_argument("--from", dest="src", default="12345", help="source address (default 12345)")
    ap.add_argument("--from-ton", type=int, default=0)
    ap.add_argument("--from-npi", type=int, default=0)
    ap.add_argument("--no-control", action="store_true",
                    help="skip /inbox and /mo checks (validation against smsc.js only)")
    ap.add_argument("--dlr-timeout", type=float, default=8.0)
    ap.add_argument("--mo-timeout", type=float, default=4.0)
    ap.add_argument("--total-timeout", type=int, default=28)
    ap.add_argument("--verbose", action="store_true", help="smpplib debug logging (hex dumps) on stderr")
    args = ap.parse_args()
    if not args.no_control and not args.control:
        ap.error("--control HOST:PORT is required unless --no-control is given")
    if args.to:
        args.to = args.to.lstrip("+")
    if args.verbose:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)

    def on_alarm(signum, frame):
        raise TotalTimeout()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.total_timeout)

    runner = Runner(args)
    result = runner.run()
    print(json.dumps(result, ensure_ascii=False, default=str))
    sys.stdout.flush()
    if not result["ok"]:
        log("FAILED checks: %s" % (", ".join(result["failed"]) or "(none run)"))
        sys.exit(1)
    log("all %d checks passed" % len(result["checks"]))
    sys.exit(0)


if __name__ == "__main__":
    main()
