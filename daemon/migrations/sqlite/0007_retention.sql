-- The expiry sweep finds pending verifications past their expiry.
CREATE INDEX verifications_pending_by_expiry ON verifications (expires_at) WHERE status = 'pending';
