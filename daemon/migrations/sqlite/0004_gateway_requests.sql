-- Voice-gateway calls carry a key derived from the request's K2, so a
-- repeated (or replayed) request returns the call it made instead of
-- placing another.
ALTER TABLE calls ADD COLUMN request_key BLOB;
CREATE UNIQUE INDEX calls_by_request ON calls (service, request_key) WHERE request_key IS NOT NULL;
