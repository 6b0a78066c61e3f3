-- The durable call queue of the voice and flash-call channels and of the
-- voice gateway. `code` (the digits a voice call reads) and `fallback_text`
-- (the SMS sent if the call fails) are cleared once the call has an outcome.
CREATE TABLE calls (
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
    sip_code        INTEGER,
    detail          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX calls_unfinished ON calls (state, next_attempt_at) WHERE state IN ('queued', 'calling');
CREATE INDEX calls_by_verification ON calls (verification_id) WHERE verification_id IS NOT NULL;
CREATE INDEX calls_flash_by_destination ON calls ("to") WHERE kind = 'flash_call';
