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
