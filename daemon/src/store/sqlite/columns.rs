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
