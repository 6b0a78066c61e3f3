#!/usr/bin/env node
'use strict';
/*
 * SMSC interop peer built on npm `smpp` 0.5.1.
 *
 *   node smsc.js --port 0 --system-id ID --password PW --mode plain|hostile
 *
 * Prints exactly one JSON line {"port":N} on stdout once listening. Logs go to
 * stderr. On every unbind, and on SIGTERM/SIGINT, prints a cumulative summary
 * line on stdout:
 *   {"generic_nack_seen":bool,"submits":N,"throttled":N,"rejected":N,...}
 * (the four keys above are the contract; further keys are informational).
 * generic_nack_seen is true when at least one unknown-command probe was sent
 * (hostile mode) and every probe sent so far got a correct generic_nack.
 *
 * Modes
 *   plain    every submit_sm -> submit_sm_resp with a hex message id, then
 *            (after --dlr-delay-ms) a DLR deliver_sm (esm_class 0x04,
 *            Appendix-B text, receipted_message_id + message_state TLVs).
 *   hostile  (i)   the 1st submit_sm of a session and every --throttle-every'th
 *                  after it (1st, 4th, 7th, ... by default) -> 0x58 ESME_RTHROTTLED
 *            (ii)  short_message containing "REJECT" -> 0x45 ESME_RSUBMITFAIL
 *                  with an empty body (command_length == 16)
 *            (iii) DLR deliver_sm is written BEFORE the submit_sm_resp
 *            (iv)  resp id is hex ("1A2B3C"); the DLR text quotes it in decimal,
 *                  zero-padded to 10 digits ("0001715004"), no TLVs at all
 *            (v)   right after bind_resp, a 16-byte PDU with unknown command_id
 *                  0x000000AA is written raw; a generic_nack (0x80000000,
 *                  status 0x03, same sequence) is expected back.
 *
 * MOs: a line on stdin {"mo":{"from":"447400100600","to":"7799","text":"LOGIN ABCD2345"}}
 * makes it deliver that mobile-originated SMS (deliver_sm, esm_class 0, source TON 1)
 * to a bound receiver; the summary counts mos_sent and mos_acked (deliver_sm_resp
 * status 0), and a summary line is printed when the resp arrives.
 *
 * Optional flags: --host H (default 127.0.0.1), --dlr-delay-ms N (plain,
 * default 100), --resp-delay-ms N (hostile: gap between DLR and resp, default 20),
 * --throttle-every N (default 3, 0 disables), --dlr requested|always
 * (default requested: DLR only when registered_delivery & 0x03 != 0),
 * --unknown-command-id HEX (default 0xAA), --quiet.
 */

const smpp = require('smpp');

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument: ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) { out[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    const key = a.slice(2);
    if (key === 'quiet') { out.quiet = true; continue; }
    if (i + 1 >= argv.length) die(`missing value for ${a}`);
    out[key] = argv[++i];
  }
  return out;
}

function die(msg) {
  process.stderr.write(`smsc.js: ${msg}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const cfg = {
  host: args.host || '127.0.0.1',
  port: args.port === undefined ? 0 : Number(args.port),
  systemId: args['system-id'],
  password: args.password,
  mode: args.mode || 'plain',
  dlrDelayMs: args['dlr-delay-ms'] === undefined ? 100 : Number(args['dlr-delay-ms']),
  respDelayMs: args['resp-delay-ms'] === undefined ? 20 : Number(args['resp-delay-ms']),
  throttleEvery: args['throttle-every'] === undefined ? 3 : Number(args['throttle-every']),
  dlrPolicy: args.dlr || 'requested',
  unknownCommandId: args['unknown-command-id'] === undefined ? 0xAA : parseInt(args['unknown-command-id'], 16),
  quiet: !!args.quiet,
};
if (cfg.systemId === undefined) die('--system-id is required');
if (cfg.password === undefined) die('--password is required');
if (!['plain', 'hostile'].includes(cfg.mode)) die(`--mode must be plain or hostile, got ${cfg.mode}`);
if (!['requested', 'always'].includes(cfg.dlrPolicy)) die('--dlr must be requested or always');
for (const k of ['port', 'dlrDelayMs', 'respDelayMs', 'throttleEvery', 'unknownCommandId']) {
  if (!Number.isInteger(cfg[k]) || cfg[k] < 0) die(`bad numeric value for ${k}`);
}
if (smpp.commandsById[cfg.unknownCommandId]) die('--unknown-command-id must not be a known SMPP command');

function log(msg) {
  if (!cfg.quiet) process.stderr.write(`[smsc ${cfg.mode}] ${msg}\n`);
}

// ---------------------------------------------------------------- state
const ESME_ROK = 0x00;
const ESME_RINVCMDID = 0x03;
const ESME_RINVBNDSTS = 0x04;
const ESME_RALYBND = 0x05;
const ESME_RINVPASWD = 0x0E;
const ESME_RINVSYSID = 0x0F;
const ESME_RSUBMITFAIL = 0x45;
const ESME_RTHROTTLED = 0x58;

const stats = {
  submits: 0,
  throttled: 0,
  rejected: 0,
  accepted: 0,
  dlrs_sent: 0,
  dlrs_acked: 0,
  binds_ok: 0,
  binds_failed: 0,
  nack_probes_sent: 0,
  nack_probes_answered: 0,   // generic_nack with the right sequence AND status 0x03
  nack_probes_bad: 0,        // generic_nack with the right sequence but wrong status
};
stats.mos_sent = 0;
stats.mos_acked = 0;
let nextMessageId = 0x1A2B3C;
let sessionCounter = 0;
const sessions = new Set();

function summary() {
  return {
    generic_nack_seen: stats.nack_probes_sent > 0 &&
      stats.nack_probes_answered === stats.nack_probes_sent,
    submits: stats.submits,
    throttled: stats.throttled,
    rejected: stats.rejected,
    accepted: stats.accepted,
    dlrs_sent: stats.dlrs_sent,
    dlrs_acked: stats.dlrs_acked,
    binds_ok: stats.binds_ok,
    binds_failed: stats.binds_failed,
    nack_probes_sent: stats.nack_probes_sent,
    nack_probes_answered: stats.nack_probes_answered,
    mos_sent: stats.mos_sent,
    mos_acked: stats.mos_acked,
    mode: cfg.mode,
  };
}

function printSummary(reason) {
  const s = summary();
  log(`summary (${reason}): ${JSON.stringify(s)}`);
  process.stdout.write(JSON.stringify(s) + '\n');
}

// ---------------------------------------------------------------- helpers
function pad2(n) { return String(n).padStart(2, '0'); }
function smppDate(d) {
  // Appendix B: YYMMDDhhmm
  return pad2(d.getUTCFullYear() % 100) + pad2(d.getUTCMonth() + 1) + pad2(d.getUTCDate()) +
    pad2(d.getUTCHours()) + pad2(d.getUTCMinutes());
}

// Text of a decoded submit_sm (npm smpp decodes short_message into {message, udh?}).
function messageText(pdu) {
  const pick = (v) => {
    if (v === undefined || v === null) return '';
    if (typeof v === 'string') return v;
    if (Buffer.isBuffer(v)) return v.toString('latin1');
    if (typeof v === 'object' && 'message' in v) return pick(v.message);
    return String(v);
  };
  let t = pick(pdu.short_message);
  if (!t) t = pick(pdu.message_payload);
  return t;
}

function receiptText(idInText, submitDate, text) {
  const done = new Date();
  // Appendix B text field: first 20 characters of the original message.
  // Keep to characters that are identical in ASCII and GSM 03.38 so the
  // receipt reads the same whether the ESME decodes data_coding 0 as GSM or ASCII.
  const snippet = text.slice(0, 20).replace(/[^A-Za-z0-9 !"#%&'()*+,\-.\/:;<=>?]/g, '?');
  return `id:${idInText} sub:001 dlvrd:001 submit date:${smppDate(submitDate)} ` +
    `done date:${smppDate(done)} stat:DELIVRD err:000 text:${snippet}`;
}

function wantsDlr(pdu) {
  if (cfg.dlrPolicy === 'always') return true;
  return (pdu.registered_delivery & 0x03) !== 0;
}

// Pick a session that can receive deliver_sm for this submitter.
function dlrTarget(session) {
  if (session.state.bound === 'trx' || session.state.bound === 'rx') return session;
  for (const s of sessions) {
    if ((s.state.bound === 'rx' || s.state.bound === 'trx') && s.state.systemId === session.state.systemId) {
      return s;
    }
  }
  return null;
}

function sendDlr(session, submit, idInText, submitDate, withTlvs, text) {
  const target = dlrTarget(session);
  if (!target) {
    log(`no receiver bound for DLR of ${idInText}; dropped`);
    return false;
  }
  const body = receiptText(idInText, submitDate, text);
  const opts = {
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: 0x04,
    data_coding: 0x00,
    // A Buffer bypasses npm smpp's charset auto-detection (which would set
    // data_coding 0x01 and GSM-encode the text).
    short_message: Buffer.from(body, 'ascii'),
  };
  if (withTlvs) {
    opts.receipted_message_id = withTlvs.receiptedId;
    opts.message_state = 2; // DELIVERED
  }
  target.deliver_sm(opts, (resp) => {
    if (resp.command_status === ESME_ROK) stats.dlrs_acked++;
    else log(`deliver_sm_resp for DLR ${idInText} has status 0x${resp.command_status.toString(16)}`);
  });
  stats.dlrs_sent++;
  log(`DLR sent for id ${idInText}: ${body}`);
  return true;
}

// ---------------------------------------------------------------- MOs (stdin)
function sendMo(mo) {
  const target = [...sessions].find((x) => x.state.bound === 'rx' || x.state.bound === 'trx');
  if (!target) {
    log('no receiver bound for the MO; dropped');
    return;
  }
  target.deliver_sm({
    source_addr_ton: 1,
    source_addr_npi: 1,
    source_addr: mo.from,
    dest_addr_ton: 0,
    dest_addr_npi: 1,
    destination_addr: mo.to,
    esm_class: 0x00,
    data_coding: 0x00,
    short_message: Buffer.from(mo.text, 'ascii'),
  }, (resp) => {
    if (resp.command_status === ESME_ROK) stats.mos_acked++;
    log(`deliver_sm_resp for the MO: status 0x${resp.command_status.toString(16)}`);
    printSummary('mo');
  });
  stats.mos_sent++;
  log(`MO sent from ${mo.from} to ${mo.to}`);
}

let stdinBuf = '';
process.stdin.on('data', (chunk) => {
  stdinBuf += chunk.toString();
  let nl;
  while ((nl = stdinBuf.indexOf('\n')) >= 0) {
    const line = stdinBuf.slice(0, nl).trim();
    stdinBuf = stdinBuf.slice(nl + 1);
    if (!line) continue;
    let cmd;
    try { cmd = JSON.parse(line); } catch (e) { log(`bad stdin line: ${line}`); continue; }
    if (cmd.mo) sendMo(cmd.mo);
  }
});
process.stdin.on('error', () => {});

// Raw header-only PDU (used for the unknown command probe).
function rawHeader(commandId, status, seq) {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(16, 0);
  b.writeUInt32BE(commandId >>> 0, 4);
  b.writeUInt32BE(status >>> 0, 8);
  b.writeUInt32BE(seq >>> 0, 12);
  return b;
}

function sendUnknownProbe(session) {
  if (!session.socket.writable) return;
  if (session.sequence >= 0x7FFFFFFF) session.sequence = 0;
  const seq = ++session.sequence; // reserve it so library-generated PDUs never reuse it
  session.state.nackProbe = { seq, answered: false };
  stats.nack_probes_sent++;
  session.socket.write(rawHeader(cfg.unknownCommandId, 0, seq));
  log(`sent unknown command_id 0x${cfg.unknownCommandId.toString(16).padStart(8, '0')} seq=${seq}; expecting generic_nack`);
  session.state.nackTimer = setTimeout(() => {
    const p = session.state.nackProbe;
    if (p && !p.answered) log(`generic_nack NOT seen within 5s for unknown command seq=${seq}`);
  }, 5000);
}

function respond(session, pdu, command, options) {
  const resp = pdu.response(options || {});
  session.send(resp);
  return resp;
}

// ---------------------------------------------------------------- handlers
function handleBind(session, pdu, kind) {
  if (session.state.bound) {
    respond(session, pdu, null, { command_status: ESME_RALYBND });
    return;
  }
  let status = ESME_ROK;
  if (pdu.system_id !== cfg.systemId) status = ESME_RINVSYSID;
  else if (pdu.password !== cfg.password) status = ESME_RINVPASWD;
  if (status !== ESME_ROK) {
    stats.binds_failed++;
    log(`${pdu.command} rejected: system_id=${JSON.stringify(pdu.system_id)} status=0x${status.toString(16)}`);
    respond(session, pdu, null, { command_status: status });
    return;
  }
  session.state.bound = kind;
  session.state.systemId = pdu.system_id;
  stats.binds_ok++;
  log(`${pdu.command} ok (session ${session.state.id})`);
  const resp = pdu.response({ system_id: 'INTEROPSMSC' });
  session.send(resp, () => {
    if (cfg.mode === 'hostile') sendUnknownProbe(session);
  });
}

function handleSubmit(session, pdu) {
  stats.submits++;
  if (!session.state.bound || session.state.bound === 'rx') {
    respond(session, pdu, null, { command_status: ESME_RINVBNDSTS });
    return;
  }
  session.state.submits++;
  const n = session.state.submits;
  const text = messageText(pdu);
  const submitDate = new Date();

  if (cfg.mode === 'hostile') {
    // (i) throttle 1st, then every throttleEvery-th after it: 1, 4, 7, ...
    if (cfg.throttleEvery > 0 && (n - 1) % cfg.throttleEvery === 0) {
      stats.throttled++;
      log(`submit #${n} seq=${pdu.sequence_number} -> ESME_RTHROTTLED`);
      respond(session, pdu, null, { command_status: ESME_RTHROTTLED });
      return;
    }
    // (ii) REJECT -> 0x45 with an empty body. npm smpp 0.5.1 emits a bare
    // 16-byte header for any non-zero command_status; we write the bytes
    // ourselves anyway so the wire format does not depend on that.
    if (text.includes('REJECT')) {
      stats.rejected++;
      log(`submit #${n} seq=${pdu.sequence_number} contains REJECT -> ESME_RSUBMITFAIL (16-byte body-less resp)`);
      session.socket.write(rawHeader(0x80000004, ESME_RSUBMITFAIL, pdu.sequence_number));
      return;
    }
    const num = nextMessageId++;
    const hexId = num.toString(16).toUpperCase();
    const decId = String(num).padStart(10, '0');
    stats.accepted++;
    // (iii) DLR first, (iv) decimal id in text, no TLVs.
    if (wantsDlr(pdu)) sendDlr(session, pdu, decId, submitDate, null, text);
    const sendResp = () => {
      if (!session.socket.writable) return;
      session.send(pdu.response({ message_id: hexId }));
      log(`submit #${n} seq=${pdu.sequence_number} accepted id=${hexId} (DLR quoted ${decId}) text=${JSON.stringify(text)}`);
    };
    if (cfg.respDelayMs > 0) setTimeout(sendResp, cfg.respDelayMs); else sendResp();
    return;
  }

  // plain
  const num = nextMessageId++;
  const hexId = num.toString(16).toUpperCase();
  stats.accepted++;
  session.send(pdu.response({ message_id: hexId }));
  log(`submit #${n} seq=${pdu.sequence_number} accepted id=${hexId} dc=${pdu.data_coding} esm=0x${(pdu.esm_class || 0).toString(16)} text=${JSON.stringify(text)}`);
  if (wantsDlr(pdu)) {
    setTimeout(() => {
      sendDlr(session, pdu, hexId, submitDate, { receiptedId: hexId }, text);
    }, cfg.dlrDelayMs);
  }
}

function handleGenericNack(session, pdu) {
  const p = session.state.nackProbe;
  const status = pdu.command_status;
  if (p && pdu.sequence_number === p.seq && !p.answered) {
    p.answered = true;
    clearTimeout(session.state.nackTimer);
    if (status === ESME_RINVCMDID) {
      stats.nack_probes_answered++;
      log(`generic_nack seen for unknown command (seq=${p.seq}, status=0x03 ESME_RINVCMDID) - OK`);
    } else {
      stats.nack_probes_bad++;
      log(`generic_nack for unknown command has status 0x${status.toString(16)} (expected 0x03) - BAD`);
    }
  } else {
    log(`unexpected generic_nack seq=${pdu.sequence_number} status=0x${status.toString(16)}`);
  }
}

function onSession(session) {
  session.state = { id: ++sessionCounter, bound: false, systemId: null, submits: 0, nackProbe: null, nackTimer: null };
  sessions.add(session);
  log(`connection ${session.state.id} from ${session.socket.remoteAddress}:${session.socket.remotePort}`);

  session.on('pdu', (pdu) => {
    try {
      switch (pdu.command) {
        case 'bind_transceiver': return handleBind(session, pdu, 'trx');
        case 'bind_transmitter': return handleBind(session, pdu, 'tx');
        case 'bind_receiver': return handleBind(session, pdu, 'rx');
        case 'submit_sm': return handleSubmit(session, pdu);
        case 'enquire_link': return session.send(pdu.response());
        case 'unbind':
          session.send(pdu.response(), () => {
            session.state.bound = false;
            if (session.state.nackProbe && !session.state.nackProbe.answered) {
              log(`generic_nack NOT seen for unknown command seq=${session.state.nackProbe.seq} before unbind`);
            }
            printSummary(`unbind on connection ${session.state.id}`);
            session.close();
          });
          return;
        case 'generic_nack': return handleGenericNack(session, pdu);
        case 'unknown':
          log(`unknown command_id 0x${pdu.command_id.toString(16)} from client -> generic_nack`);
          return session.send(pdu.response()); // npm smpp maps this to generic_nack/ESME_RINVCMDID
        default:
          if (pdu.isResponse()) return; // deliver_sm_resp, enquire_link_resp, unbind_resp ...
          log(`unsupported ${pdu.command} -> ESME_RINVCMDID`);
          return session.send(pdu.response({ command_status: ESME_RINVCMDID }));
      }
    } catch (e) {
      log(`error handling ${pdu.command}: ${e.stack || e}`);
    }
  });
  session.on('error', (e) => log(`connection ${session.state.id} error: ${e.message}`));
  session.on('close', () => {
    sessions.delete(session);
    clearTimeout(session.state.nackTimer);
    const p = session.state.nackProbe;
    if (p && !p.answered) log(`generic_nack NOT seen for unknown command seq=${p.seq} before connection ${session.state.id} closed`);
    log(`connection ${session.state.id} closed`);
  });
}

// ---------------------------------------------------------------- main
const server = smpp.createServer(onSession);
server.on('error', (e) => die(`server error: ${e.message}`));
server.listen(cfg.port, cfg.host, () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
  log(`listening on ${cfg.host}:${server.address().port} system_id=${cfg.systemId}`);
});

let stopping = false;
function stop(sig) {
  if (stopping) return;
  stopping = true;
  printSummary(sig);
  for (const s of sessions) s.destroy();
  server.close();
  // give stdout a moment to flush when it is a pipe
  setTimeout(() => process.exit(0), 50);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
