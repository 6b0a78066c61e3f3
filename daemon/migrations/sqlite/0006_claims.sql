-- Fencing of the durable queues (outbox, calls, webhook jobs): every claim
-- counts up `claim`, and a holder's completion, failure, requeue or lease
-- extension applies only while `claim` is still the number its claim got,
-- so a holder whose lease ran out and whose job was claimed again cannot
-- finish it a second time.
ALTER TABLE outbox ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_jobs ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;
