//! Column lists shared by the statements of several domains.

macro_rules! verification_cols {
    () => {
        r#"id, service, "to", channel, locale, status, code_hash, attempts, max_attempts,
           sends, created_at, expires_at, last_sent_at, updated_at"#
    };
}

macro_rules! outbox_cols {
    () => {
        r#"id, verification_id, service, "to", "from", text, state, attempts, next_attempt_at,
           expires_at, smsc, message_ids, last_error, created_at, updated_at"#
    };
}

macro_rules! call_cols {
    () => {
        r#"id, verification_id, service, kind, "to", caller, code, fallback_text, locale, state,
           sip_code, detail, attempts, next_attempt_at, expires_at, created_at, updated_at"#
    };
}

macro_rules! api_key_cols {
    () => {
        "key_id, service, hash, created_at, revoked_at"
    };
}

/// The claim of a queue whose rows go `queued` → `$working` (outbox:
/// sending, calls: calling): rows due, and working rows whose lease ran
/// out, not past their expiry, oldest first; each gets a new claim number
/// and lease (`?1` now, `?2` lease end, `?3` limit). `$cols` are the
/// columns its decoder reads.
macro_rules! claim_due_sql {
    ($table:literal, $working:literal, $($cols:tt)+) => {
        concat!(
            "UPDATE ", $table, "
             SET state = '", $working, "', attempts = attempts + 1, claim = claim + 1,
                 lease_until = ?2, updated_at = ?1
             WHERE id IN (
                 SELECT id FROM ", $table, "
                 WHERE state IN ('queued', '", $working, "')
                   AND ((state = 'queued' AND next_attempt_at <= ?1)
                        OR (state = '", $working, "' AND COALESCE(lease_until, 0) <= ?1))
                   AND expires_at >= ?1
                 ORDER BY created_at, rowid
                 LIMIT ?3)
             RETURNING rowid AS seq, claim, lease_until, ",
            $($cols)+
        )
    };
}
