-- verigate on PostgreSQL: the schema the SQLite migrations 0001–0014 build,
-- in PostgreSQL's types. Times are Unix milliseconds (BIGINT) as in SQLite;
-- every table without an identity key gets `rowid`, the insertion order SQLite's
-- rowid gives (claims and retention order by it).

CREATE TABLE services (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    code       TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    settings   TEXT    NOT NULL DEFAULT '{}',
    created_at BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    key_id     TEXT    NOT NULL PRIMARY KEY,
    service    TEXT    NOT NULL REFERENCES services (code),
    hash       BYTEA   NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE verifications (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id           TEXT    NOT NULL PRIMARY KEY,
    service      TEXT    NOT NULL REFERENCES services (code),
    "to"         TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    locale       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    code_hash    BYTEA   NOT NULL,
    attempts     BIGINT  NOT NULL,
    max_attempts BIGINT  NOT NULL,
    sends        BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_sent_at BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE idempotency_keys (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    service         TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    request_hash    BYTEA   NOT NULL,
    verification_id TEXT    NOT NULL REFERENCES verifications (id),
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (service, key)
);

CREATE TABLE outbox (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    verification_id TEXT    REFERENCES verifications (id),
    service         TEXT    NOT NULL REFERENCES services (code),
    "to"            TEXT    NOT NULL,
    "from"          TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    expires_at      BIGINT  NOT NULL,
    smsc            TEXT,
    message_ids     TEXT    NOT NULL DEFAULT '[]',
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
, claim BIGINT  NOT NULL DEFAULT 0);

CREATE TABLE message_keys (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    key        TEXT    NOT NULL,
    outbox_id  TEXT    NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    is_primary BIGINT  NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (key, outbox_id)
);

CREATE TABLE parked_dlrs (
    id    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state TEXT    NOT NULL,
    at    BIGINT  NOT NULL
);

CREATE TABLE parked_dlr_keys (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    key       TEXT    NOT NULL,
    parked_id BIGINT  NOT NULL REFERENCES parked_dlrs (id) ON DELETE CASCADE,
    PRIMARY KEY (key, parked_id)
);

CREATE TABLE rate_windows (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    key          TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    count        BIGINT  NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE TABLE webhook_jobs (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    service         TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT
, claim BIGINT  NOT NULL DEFAULT 0, method TEXT NOT NULL DEFAULT 'POST', credential TEXT, deliver_until BIGINT , topic TEXT);

CREATE TABLE accounts (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id            TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL REFERENCES services (code),
    msisdn        TEXT    NOT NULL,
    password_hash TEXT,
    created_at    BIGINT  NOT NULL,
    UNIQUE (service, msisdn)
);

CREATE TABLE sessions (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT    NOT NULL PRIMARY KEY,
    account_id TEXT    NOT NULL REFERENCES accounts (id),
    token_hash BYTEA   NOT NULL UNIQUE,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE TABLE audit_events (
    seq     BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT  NOT NULL,
    service TEXT,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);

CREATE TABLE calls (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    verification_id TEXT    REFERENCES verifications (id),
    service         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    "to"            TEXT    NOT NULL,
    caller          TEXT,
    code            TEXT,
    fallback_text   TEXT,
    locale          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    sip_code        BIGINT,
    detail          TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    expires_at      BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
, request_key BYTEA, claim BIGINT  NOT NULL DEFAULT 0);

CREATE TABLE mo_logins (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    token         TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL REFERENCES services (code),
    intent        TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    msisdn        TEXT,
    account_id    TEXT    REFERENCES accounts (id),
    created_account BIGINT  NOT NULL DEFAULT 0,
    -- The session token in clear until the app collects it once.
    session_token TEXT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    completed_at  BIGINT
);

CREATE TABLE mo_messages (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id           TEXT    NOT NULL PRIMARY KEY,
    smsc         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    dest         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    dedup_key    BYTEA   NOT NULL,
    state        TEXT    NOT NULL,
    outcome      TEXT,
    received_at  BIGINT  NOT NULL,
    processed_at BIGINT
);

CREATE TABLE mo_parts (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    smsc        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    dest        TEXT    NOT NULL,
    reference   BIGINT  NOT NULL,
    total       BIGINT  NOT NULL,
    seq         BIGINT  NOT NULL,
    source_ton  BIGINT  NOT NULL,
    data_coding BIGINT  NOT NULL,
    payload     BYTEA   NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (smsc, source, dest, reference, total, seq)
);

CREATE TABLE registry_apps (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    service    TEXT    NOT NULL PRIMARY KEY REFERENCES services (code),
    notify_url TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE bindings (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    msisdn   TEXT    NOT NULL,
    service  TEXT    NOT NULL REFERENCES registry_apps (service),
    bound_at BIGINT  NOT NULL,
    PRIMARY KEY (msisdn, service)
);

CREATE TABLE number_recycles (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    msisdn      TEXT    NOT NULL,
    recycled_at BIGINT  NOT NULL,
    PRIMARY KEY (msisdn, recycled_at)
);

CREATE TABLE registry_moves (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    token      TEXT    NOT NULL PRIMARY KEY,
    old_msisdn TEXT    NOT NULL,
    new_msisdn TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

CREATE TABLE app_bindings (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    service         TEXT    NOT NULL REFERENCES services (code),
    account_ref     TEXT    NOT NULL,
    msisdn          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    verification_id TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

CREATE TABLE registry_events_seen (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    service     TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (service, event_id)
);

CREATE TABLE subscribers (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    msisdn         TEXT    NOT NULL PRIMARY KEY,
    imsi           TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    sim_changed_at BIGINT,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE relay_keys (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    kind       TEXT    NOT NULL,
    slot       TEXT    NOT NULL,
    wrapped    BYTEA   NOT NULL,
    kcv        TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    retire_at  BIGINT,
    PRIMARY KEY (kind, slot)
);

CREATE TABLE relay_counters (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    initial_key_id TEXT    NOT NULL PRIMARY KEY,
    counter        BIGINT  NOT NULL
);

CREATE TABLE tx_sessions (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    front_end       TEXT    NOT NULL,
    bank            TEXT    NOT NULL,
    msisdn          TEXT    NOT NULL,
    imsi            TEXT    NOT NULL,
    ksn             TEXT    NOT NULL,
    issued_at       BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    error_code      TEXT,
    error           TEXT,
    next_seq        BIGINT  NOT NULL DEFAULT 0,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claim           BIGINT  NOT NULL DEFAULT 0,
    lease_until     BIGINT
);

CREATE TABLE tx_transactions (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    id              TEXT    NOT NULL PRIMARY KEY,
    session_id      TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    front_end       TEXT    NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT    NOT NULL,
    transfer        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    reason          TEXT,
    error_code      TEXT,
    bank_ref        TEXT,
    result_mac      TEXT,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    claim           BIGINT  NOT NULL DEFAULT 0,
    lease_until     BIGINT,
    UNIQUE (session_id, seq)
);

CREATE INDEX api_keys_by_service ON api_keys (service, created_at);

CREATE UNIQUE INDEX verifications_one_pending
    ON verifications (service, "to") WHERE status = 'pending';

CREATE INDEX verifications_by_number ON verifications (service, "to", created_at);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE INDEX outbox_by_state ON outbox (state, expires_at);

CREATE INDEX outbox_by_verification ON outbox (verification_id, created_at);

CREATE INDEX message_keys_by_message ON message_keys (outbox_id);

CREATE INDEX parked_dlrs_by_age ON parked_dlrs (at);

CREATE INDEX parked_dlr_keys_by_dlr ON parked_dlr_keys (parked_id);

CREATE INDEX webhook_jobs_due ON webhook_jobs (next_attempt_at);

CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE INDEX audit_events_by_time ON audit_events (at, seq);

CREATE INDEX rate_windows_by_start ON rate_windows (window_start);

CREATE INDEX calls_unfinished ON calls (state, next_attempt_at) WHERE state IN ('queued', 'calling');

CREATE INDEX calls_by_verification ON calls (verification_id) WHERE verification_id IS NOT NULL;

CREATE INDEX calls_flash_by_destination ON calls ("to") WHERE kind = 'flash_call';

CREATE UNIQUE INDEX calls_by_request ON calls (service, request_key) WHERE request_key IS NOT NULL;

CREATE INDEX mo_logins_by_expiry ON mo_logins (expires_at);

CREATE INDEX mo_messages_by_key ON mo_messages (dedup_key, received_at);

CREATE INDEX mo_messages_by_age ON mo_messages (received_at);

CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE INDEX outbox_texts_kept ON outbox (updated_at) WHERE text <> '';

CREATE INDEX verifications_pending_by_expiry ON verifications (expires_at) WHERE status = 'pending';

CREATE INDEX verifications_closed_by_update ON verifications (updated_at) WHERE status <> 'pending';

CREATE INDEX idempotency_keys_by_verification ON idempotency_keys (verification_id);

CREATE INDEX outbox_unowned_by_update ON outbox (updated_at) WHERE verification_id IS NULL;

CREATE INDEX calls_unowned_by_update ON calls (updated_at) WHERE verification_id IS NULL;

CREATE INDEX outbox_texts_by_expiry ON outbox (expires_at) WHERE text <> '';

CREATE INDEX mo_parts_by_age ON mo_parts (received_at);

CREATE INDEX bindings_by_service ON bindings (service, msisdn);

CREATE INDEX number_recycles_by_time ON number_recycles (recycled_at);

CREATE INDEX webhook_jobs_by_topic ON webhook_jobs (topic, service, next_attempt_at)
    WHERE topic IS NOT NULL;

CREATE INDEX registry_moves_by_expiry ON registry_moves (expires_at);

CREATE UNIQUE INDEX app_bindings_active ON app_bindings (service, msisdn)
    WHERE state = 'active';

CREATE INDEX app_bindings_by_number ON app_bindings (service, msisdn, created_at);

CREATE INDEX app_bindings_by_account ON app_bindings (service, account_ref, created_at);

CREATE INDEX app_bindings_pending ON app_bindings (created_at) WHERE state = 'pending';

CREATE INDEX registry_events_seen_by_time ON registry_events_seen (received_at);

CREATE INDEX subscribers_by_imsi ON subscribers (imsi);

CREATE INDEX tx_sessions_due ON tx_sessions (next_attempt_at) WHERE state = 'registering';

CREATE UNIQUE INDEX tx_transactions_idempotency ON tx_transactions (front_end, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX tx_transactions_due ON tx_transactions (next_attempt_at) WHERE state = 'queued';

CREATE INDEX tx_transactions_queued ON tx_transactions (session_id, seq) WHERE state = 'queued';
