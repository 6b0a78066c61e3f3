-- The relay's sessions (a terminal's registration with its bank under one
-- DUKPT counter) and their transactions, each a fenced queue row.
CREATE TABLE tx_sessions (
    id              TEXT    NOT NULL PRIMARY KEY,
    front_end       TEXT    NOT NULL,
    bank            TEXT    NOT NULL,
    msisdn          TEXT    NOT NULL,
    imsi            TEXT    NOT NULL,
    ksn             TEXT    NOT NULL,
    issued_at       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    error_code      TEXT,
    error           TEXT,
    next_seq        INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    claim           INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER
);
CREATE INDEX tx_sessions_due ON tx_sessions (next_attempt_at) WHERE state = 'registering';

CREATE TABLE tx_transactions (
    id              TEXT    NOT NULL PRIMARY KEY,
    session_id      TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    front_end       TEXT    NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT    NOT NULL,
    transfer        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    reason          TEXT,
    error_code      TEXT,
    bank_ref        TEXT,
    result_mac      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    claim           INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER,
    UNIQUE (session_id, seq)
);
CREATE UNIQUE INDEX tx_transactions_idempotency ON tx_transactions (front_end, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tx_transactions_due ON tx_transactions (next_attempt_at) WHERE state = 'queued';
CREATE INDEX tx_transactions_queued ON tx_transactions (session_id, seq) WHERE state = 'queued';
