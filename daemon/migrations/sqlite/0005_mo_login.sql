-- MO-SMS login: the logins apps asked for, and every mobile-originated
-- message, stored with its outcome before its deliver_sm_resp goes out.
CREATE TABLE mo_logins (
    token         TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL REFERENCES services (code),
    intent        TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    msisdn        TEXT,
    account_id    TEXT    REFERENCES accounts (id),
    created_account INTEGER NOT NULL DEFAULT 0,
    -- The session token in clear until the app collects it once.
    session_token TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    completed_at  INTEGER
);
CREATE INDEX mo_logins_by_expiry ON mo_logins (expires_at);

CREATE TABLE mo_messages (
    id           TEXT    NOT NULL PRIMARY KEY,
    smsc         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    dest         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    dedup_key    BLOB    NOT NULL,
    state        TEXT    NOT NULL,
    outcome      TEXT,
    received_at  INTEGER NOT NULL,
    processed_at INTEGER
);
CREATE INDEX mo_messages_by_key ON mo_messages (dedup_key, received_at);
CREATE INDEX mo_messages_by_age ON mo_messages (received_at);

-- Housekeeping (Store::forget_old): expired sessions, and the texts (codes,
-- passwords) of SMS that reached a final state.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX outbox_texts_kept ON outbox (updated_at) WHERE text <> '';
