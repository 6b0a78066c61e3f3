#!/usr/bin/env node
'use strict';
/*
 * ESME interop peer built on npm `smpp` 0.5.1.
 *
 *   node esme.js --host H --port P --system-id ID --password PW
 *                [--to MSISDN] [--from SRC] [--timeout SECS]
 *
 * bind_transceiver, submit one GSM 03.38 message (data_coding 0, with
 * extension-table characters) and one UCS-2 message (data_coding 8, Chinese +
 * an emoji) with registered_delivery 1, wait for both DLRs (default 20 s),
 * unbind. A submit answered with 0x58 ESME_RTHROTTLED is retried. DLRs are
 * accepted before the submit_sm_resp and matched by receipted_message_id or the
 * Appendix-B "id:" field (hex/decimal tolerant).
 *
 * stdout: one JSON summary line. Exit 0 when both messages were accepted and
 * both DLRs arrived with stat DELIVRD; exit 1 (reason on stderr and in the JSON
 * "error" field) otherwise; exit 2 on usage errors.
 */

const smpp = require('smpp');

function die(msg) {
  process.stderr.write(`esme.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) die(`unexpected argument: ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) { out[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    if (i + 1 >= argv.length) die(`missing value for ${a}`);
    out[a.slice(2)] = argv[++i];
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
for (const k of ['host', 'port', 'system-id', 'password']) {
  if (args[k] === undefined) die(`--${k} is required`);
}
const cfg = {
  host: args.host,
  port: Number(args.port),
  systemId: args['system-id'],
  password: args.password,
  to: (args.to || `4477009${String(Math.floor(Math.random() * 100000)).padStart(5, '0')}`).replace(/^\+/, ''),
  from: args.from || '12345',
  timeoutMs: Math.round(1000 * (args.timeout === undefined ? 20 : Number(args.timeout))),
};
if (!Number.isInteger(cfg.port) || cfg.port <= 0) die('bad --port');
if (!(cfg.timeoutMs > 0)) die('bad --timeout');

const ESME_ROK = 0x00;
const ESME_RTHROTTLED = 0x58;

function log(msg) { process.stderr.write(`[esme.js] ${msg}\n`); }

const token = String(Math.floor(Math.random() * 1e6)).padStart(6, '0');
const MESSAGES = [
  { label: 'gsm', data_coding: 0x00, text: `npm GSM € [a] {b} ~^|\\ @£$¥ äöñüà ΔΩ tok${token}` },
  { label: 'ucs2', data_coding: 0x08, text: `npm UCS2 中文短信 😀 tok${token}` },
];

const result = {
  ok: false,
  destination: cfg.to,
  messages: [],
  unknown_commands_nacked: 0,
  deliver_sm_received: 0,
  unbind: null,
  error: null,
};

const dlrs = []; // {id, tlvId, stat, text, matched}
let session = null;
let finished = false;
let unbinding = false;

function finish(err) {
  if (finished) return;
  finished = true;
  clearTimeout(globalTimer);
  if (err) {
    result.error = String(err.message || err);
    log(`FAIL: ${result.error}`);
  }
  result.ok = !err;
  process.stdout.write(JSON.stringify(result) + '\n');
  if (session) {
    try { session.destroy(); } catch (e) { /* ignore */ }
  }
  process.exitCode = err ? 1 : 0;
  setTimeout(() => process.exit(process.exitCode), 50);
}

const globalTimer = setTimeout(() => finish(new Error(`overall timeout (${cfg.timeoutMs + 5000} ms)`)), cfg.timeoutMs + 5000);

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

function request(command, options, what, ms) {
  return withTimeout(new Promise((resolve, reject) => {
    const sent = session[command](options, (pdu) => resolve(pdu));
    if (!sent) reject(new Error(`socket not writable sending ${command}`));
  }), ms, what);
}

function idMatches(submitted, dlrId) {
  const a = String(submitted).trim().toLowerCase();
  const b = String(dlrId).trim().toLowerCase();
  if (!a || !b) return false;
  if (a === b) return true;
  if ((a.replace(/^0+/, '') || '0') === (b.replace(/^0+/, '') || '0')) return true;
  try {
    if (/^[0-9a-f]+$/.test(a) && /^[0-9]+$/.test(b) && BigInt('0x' + a) === BigInt(b)) return true;
    if (/^[0-9]+$/.test(a) && /^[0-9a-f]+$/.test(b) && BigInt(a) === BigInt('0x' + b)) return true;
  } catch (e) { /* not numeric */ }
  return false;
}

function textOf(sm) {
  if (sm === undefined || sm === null) return '';
  if (typeof sm === 'string') return sm;
  if (Buffer.isBuffer(sm)) return sm.toString('latin1');
  if (typeof sm === 'object' && 'message' in sm) return textOf(sm.message);
  return String(sm);
}

function onDeliverSm(pdu) {
  result.deliver_sm_received++;
  session.send(pdu.response()); // deliver_sm_resp, status 0, empty message_id
  const esm = pdu.esm_class || 0;
  if ((esm & 0x3C) === 0x04) {
    const text = textOf(pdu.short_message) || textOf(pdu.message_payload);
    const id = (text.match(/\bid:(\S+)/i) || [])[1] || null;
    const stat = ((text.match(/\bstat:(\w+)/i) || [])[1] || '').toUpperCase() || null;
    const tlvId = pdu.receipted_message_id ? String(pdu.receipted_message_id).replace(/\0+$/, '') : null;
    dlrs.push({ id, tlvId, stat, text, message_state: pdu.message_state, matched: false });
    log(`DLR: ${text} (receipted_message_id=${tlvId} message_state=${pdu.message_state})`);
    matchDlrs();
  } else {
    log(`deliver_sm (not a receipt) from ${pdu.source_addr}: ${JSON.stringify(textOf(pdu.short_message))}`);
  }
}

let dlrWaiter = null;
function matchDlrs() {
  for (const d of dlrs) {
    if (d.matched) continue;
    for (const m of result.messages) {
      if (m.dlr_stat || !m.message_id) continue;
      if ((d.tlvId && idMatches(m.message_id, d.tlvId)) || (d.id && idMatches(m.message_id, d.id))) {
        m.dlr_stat = d.stat;
        m.dlr_id = d.tlvId || d.id;
        d.matched = true;
        break;
      }
    }
  }
  if (dlrWaiter && result.messages.length === MESSAGES.length && result.messages.every((m) => m.dlr_stat)) {
    dlrWaiter();
  }
}

async function submit(msg) {
  for (let attempt = 1; attempt <= 10; attempt++) {
    const resp = await request('submit_sm', {
      source_addr_ton: 0, source_addr_npi: 0, source_addr: cfg.from,
      dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: cfg.to,
      registered_delivery: 1,
      data_coding: msg.data_coding,   // explicit: with null, npm smpp auto-detects and picks 0x01 for GSM text
      short_message: msg.text,
    }, `submit_sm_resp (${msg.label})`, 5000);
    if (resp.command === 'generic_nack') throw new Error(`generic_nack 0x${resp.command_status.toString(16)} for submit_sm ${msg.label}`);
    if (resp.command_status === ESME_RTHROTTLED) {
      log(`${msg.label}: throttled (0x58), retry ${attempt}`);
      await new Promise((r) => setTimeout(r, Math.min(200 * attempt, 1000)));
      continue;
    }
    if (resp.command_status !== ESME_ROK) {
      throw new Error(`submit_sm ${msg.label} rejected with status 0x${resp.command_status.toString(16)}`);
    }
    if (!resp.message_id) throw new Error(`submit_sm_resp for ${msg.label} has an empty message_id`);
    const entry = { label: msg.label, data_coding: msg.data_coding, message_id: resp.message_id, attempts: attempt, dlr_stat: null, dlr_id: null };
    result.messages.push(entry);
    log(`${msg.label}: accepted, message_id=${resp.message_id}`);
    matchDlrs(); // a DLR may already be here
    return;
  }
  throw new Error(`submit_sm ${msg.label} still throttled after 10 attempts`);
}

async function main() {
  session = smpp.connect({ host: cfg.host, port: cfg.port });
  session.on('error', (e) => finish(new Error(`connection error: ${e.message}`)));
  session.on('close', () => { if (!finished && !unbinding) finish(new Error('connection closed by peer')); });
  session.on('deliver_sm', onDeliverSm);
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unknown', (pdu) => {
    result.unknown_commands_nacked++;
    log(`unknown command_id 0x${pdu.command_id.toString(16)} -> generic_nack`);
    session.send(pdu.response()); // generic_nack / ESME_RINVCMDID
  });
  session.on('unbind', (pdu) => {
    log('peer sent unbind');
    session.send(pdu.response());
  });

  await withTimeout(new Promise((resolve) => session.once('connect', resolve)), 5000, 'TCP connect');
  const bind = await request('bind_transceiver', { system_id: cfg.systemId, password: cfg.password }, 'bind_transceiver_resp', 5000);
  if (bind.command_status !== ESME_ROK) {
    throw new Error(`bind_transceiver failed with status 0x${bind.command_status.toString(16)}`);
  }
  log(`bound (server system_id=${bind.system_id})`);

  const dlrsDone = new Promise((resolve) => { dlrWaiter = resolve; });
  for (const m of MESSAGES) await submit(m);
  matchDlrs();
  await withTimeout(dlrsDone, cfg.timeoutMs, 'DLRs').catch((e) => {
    const missing = result.messages.filter((m) => !m.dlr_stat).map((m) => `${m.label}:${m.message_id}`);
    throw new Error(`${e.message}; missing DLR for ${missing.join(', ')}`);
  });
  const bad = result.messages.filter((m) => m.dlr_stat !== 'DELIVRD');
  if (bad.length) throw new Error(`DLR stat not DELIVRD: ${bad.map((m) => `${m.label}=${m.dlr_stat}`).join(', ')}`);

  unbinding = true;
  const ub = await request('unbind', {}, 'unbind_resp', 3000);
  result.unbind = ub.command_status === ESME_ROK ? 'ok' : `status 0x${ub.command_status.toString(16)}`;
  if (ub.command_status !== ESME_ROK) throw new Error(`unbind_resp status 0x${ub.command_status.toString(16)}`);
}

main().then(() => finish(null), (e) => finish(e));
