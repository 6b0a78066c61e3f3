-- Queued deliveries beyond status events: the method (the app side's PUT
-- and DELETE to a carrier registry), a named credential of the worker's
-- to sign with (never the secret itself), and a deadline that replaces the
-- attempt limit (registry notifications are retried for days), and a topic.
ALTER TABLE webhook_jobs ADD COLUMN method TEXT NOT NULL DEFAULT 'POST';
ALTER TABLE webhook_jobs ADD COLUMN credential TEXT;
ALTER TABLE webhook_jobs ADD COLUMN deliver_until INTEGER;
-- What a delivery belongs to, for listing ('registry', 'bindings'; NULL:
-- a status event); the partial index keeps status events out of it.
ALTER TABLE webhook_jobs ADD COLUMN topic TEXT;
CREATE INDEX webhook_jobs_by_topic ON webhook_jobs (topic, service, next_attempt_at)
    WHERE topic IS NOT NULL;
