-- The app side of the number registry: its accounts' numbers (one active
-- binding per number and app), and the registry notifications applied.
CREATE TABLE app_bindings (
    id              TEXT    NOT NULL PRIMARY KEY,
    service         TEXT    NOT NULL REFERENCES services (code),
    account_ref     TEXT    NOT NULL,
    msisdn          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    verification_id TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX app_bindings_active ON app_bindings (service, msisdn)
    WHERE state = 'active';
CREATE INDEX app_bindings_by_number ON app_bindings (service, msisdn, created_at);
CREATE INDEX app_bindings_by_account ON app_bindings (service, account_ref, created_at);
CREATE INDEX app_bindings_pending ON app_bindings (created_at) WHERE state = 'pending';
CREATE TABLE registry_events_seen (
    service     TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (service, event_id)
);
CREATE INDEX registry_events_seen_by_time ON registry_events_seen (received_at);
