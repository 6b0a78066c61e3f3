-- The carrier's number-binding registry: app platforms (services of ours),
-- the numbers bound to them, and when numbers were recycled.
CREATE TABLE registry_apps (
    service    TEXT    NOT NULL PRIMARY KEY REFERENCES services (code),
    notify_url TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE bindings (
    msisdn   TEXT    NOT NULL,
    service  TEXT    NOT NULL REFERENCES registry_apps (service),
    bound_at INTEGER NOT NULL,
    PRIMARY KEY (msisdn, service)
);
CREATE INDEX bindings_by_service ON bindings (service, msisdn);
CREATE TABLE number_recycles (
    msisdn      TEXT    NOT NULL,
    recycled_at INTEGER NOT NULL,
    PRIMARY KEY (msisdn, recycled_at)
);
CREATE INDEX number_recycles_by_time ON number_recycles (recycled_at);
