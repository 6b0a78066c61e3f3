-- The expiry sweep finds pending verifications past their expiry.
CREATE INDEX verifications_pending_by_expiry ON verifications (expires_at) WHERE status = 'pending';
-- Retention deletes closed verifications, and what refers to them, by age.
CREATE INDEX verifications_closed_by_update ON verifications (updated_at) WHERE status <> 'pending';
CREATE INDEX idempotency_keys_by_verification ON idempotency_keys (verification_id);
-- SMS and calls of no verification (MO replies, gateway calls) by age.
CREATE INDEX outbox_unowned_by_update ON outbox (updated_at) WHERE verification_id IS NULL;
CREATE INDEX calls_unowned_by_update ON calls (updated_at) WHERE verification_id IS NULL;
-- Texts kept past their expiry.
CREATE INDEX outbox_texts_by_expiry ON outbox (expires_at) WHERE text <> '';

-- Parts of long MOs, each stored (and answered) as it comes; the MO is put
-- together from here once all are in, and its parts deleted with it.
CREATE TABLE mo_parts (
    smsc        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    dest        TEXT    NOT NULL,
    reference   INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    source_ton  INTEGER NOT NULL,
    data_coding INTEGER NOT NULL,
    payload     BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (smsc, source, dest, reference, total, seq)
);
CREATE INDEX mo_parts_by_age ON mo_parts (received_at);
