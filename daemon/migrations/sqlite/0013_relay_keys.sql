-- The relay's keys, each wrapped under the daemon's local key-encryption
-- key: custodians' components, zone keys by version, the initial key.
CREATE TABLE relay_keys (
    kind       TEXT    NOT NULL,
    slot       TEXT    NOT NULL,
    wrapped    BLOB    NOT NULL,
    kcv        TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    retire_at  INTEGER,
    PRIMARY KEY (kind, slot)
);

-- The last DUKPT transaction counter handed out per initial key id.
CREATE TABLE relay_counters (
    initial_key_id TEXT    NOT NULL PRIMARY KEY,
    counter        INTEGER NOT NULL
);
