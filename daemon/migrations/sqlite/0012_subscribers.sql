-- The relay's subscriber directory: number ↔ SIM, line status, last SIM change.
CREATE TABLE subscribers (
    msisdn         TEXT    NOT NULL PRIMARY KEY,
    imsi           TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    sim_changed_at INTEGER,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX subscribers_by_imsi ON subscribers (imsi);
