-- verigate SQLite schema, version 1.
--
-- Conventions: times are INTEGER Unix milliseconds (UTC); hashes are BLOBs;
-- JSON (service settings, audit detail, outbox message ids) is TEXT; enum
-- values are stored in their `as_str` spelling (unknown spellings are
-- reported as corrupt records when read, so no CHECK constraint pins the
-- set and a new value needs no table rebuild).

-- Services (tenants) and their API keys.
CREATE TABLE services (
    code       TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    settings   TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    service    TEXT    NOT NULL REFERENCES services (code),
    hash       BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_by_service ON api_keys (service, created_at);

-- Verifications. At most one pending verification per (service, number),
-- enforced by the database itself so that it holds across instances.
CREATE TABLE verifications (
    id           TEXT    NOT NULL PRIMARY KEY,
    service      TEXT    NOT NULL REFERENCES services (code),
    "to"         TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    locale       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    code_hash    BLOB    NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    sends        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_sent_at INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX verifications_one_pending
    ON verifications (service, "to") WHERE status = 'pending';
CREATE INDEX verifications_by_number ON verifications (service, "to", created_at);

-- Idempotency-Key of start requests, one per (service, key).
CREATE TABLE idempotency_keys (
    service         TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    request_hash    BLOB    NOT NULL,
    verification_id TEXT    NOT NULL REFERENCES verifications (id),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (service, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- The durable outbox. `lease_until` is set while a sender holds the message
-- (state 'sending'); a lapsed lease makes it claimable again.
-- `message_ids` is a JSON array of the SMSC message ids (one per part).
CREATE TABLE outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    verification_id TEXT    REFERENCES verifications (id),
    service         TEXT    NOT NULL REFERENCES services (code),
    "to"            TEXT    NOT NULL,
    "from"          TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    expires_at      INTEGER NOT NULL,
    smsc            TEXT,
    message_ids     TEXT    NOT NULL DEFAULT '[]',
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- Claims and expiry search only the (small) set of unfinished messages
-- (state queued/sending) by expiry; depth counts read the index alone.
CREATE INDEX outbox_by_state ON outbox (state, expires_at);
CREATE INDEX outbox_by_verification ON outbox (verification_id, created_at);

-- Correlation keys of SMSC message ids (`verigate_codecs::dlr::message_id_keys`):
-- every id of a message yields up to two keys; `is_primary` marks the
-- primary key of an id (receipts prefer a candidate whose primary key
-- equals theirs). Keys are not unique: SMSCs reuse ids eventually, and
-- digits-only ids have two readings.
CREATE TABLE message_keys (
    key        TEXT    NOT NULL,
    outbox_id  TEXT    NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    is_primary INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key, outbox_id)
);
CREATE INDEX message_keys_by_message ON message_keys (outbox_id);

-- Receipts that arrived before their message's submit_sm_resp was recorded,
-- with their correlation keys; applied (and deleted) when the id is recorded.
CREATE TABLE parked_dlrs (
    id    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    state TEXT    NOT NULL,
    at    INTEGER NOT NULL
);
CREATE INDEX parked_dlrs_by_age ON parked_dlrs (at);

CREATE TABLE parked_dlr_keys (
    key       TEXT    NOT NULL,
    parked_id INTEGER NOT NULL REFERENCES parked_dlrs (id) ON DELETE CASCADE,
    PRIMARY KEY (key, parked_id)
);
CREATE INDEX parked_dlr_keys_by_dlr ON parked_dlr_keys (parked_id);

-- Fixed-window rate limits: one row per key and window (older windows of a
-- key are deleted when a newer one starts).
CREATE TABLE rate_windows (
    key          TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- The durable webhook queue (a job is deleted once delivered or dropped).
CREATE TABLE webhook_jobs (
    id              TEXT    NOT NULL PRIMARY KEY,
    service         TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_jobs_due ON webhook_jobs (next_attempt_at);

-- Subscriber accounts (MO login) and their sessions.
CREATE TABLE accounts (
    id            TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL REFERENCES services (code),
    msisdn        TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (service, msisdn)
);

CREATE TABLE sessions (
    id         TEXT    NOT NULL PRIMARY KEY,
    account_id TEXT    NOT NULL REFERENCES accounts (id),
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id);

-- Append-only audit log; `seq` orders events with the same time.
CREATE TABLE audit_events (
    seq     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    service TEXT,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (at, seq);
