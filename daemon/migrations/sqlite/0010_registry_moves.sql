-- A subscriber moving their bindings to a new number: the old number's
-- offer, waiting for the new number to prove itself with the token.
CREATE TABLE registry_moves (
    token      TEXT    NOT NULL PRIMARY KEY,
    old_msisdn TEXT    NOT NULL,
    new_msisdn TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX registry_moves_by_expiry ON registry_moves (expires_at);
