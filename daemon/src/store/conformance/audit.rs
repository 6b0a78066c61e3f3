//! The audit trail.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: AuditStore>(store: &S) {
    audit_order(store).await;
}

/// Audit events come back newest first (by time, then insertion), intact.
pub async fn audit_order<S: AuditStore>(store: &S) {
    let t = T_AUDIT;
    let event = |at: Millis, n: u32, service: Option<&str>| AuditEvent {
        at,
        service: service.map(str::to_owned),
        kind: format!("conf.audit.{n}"),
        detail: serde_json::json!({ "n": n, "to": "+1555***4001", "nested": { "ok": true } }),
    };
    let events = [
        event(t, 1, Some("conf-svc-a")),
        event(t + 1, 2, None),
        event(t + 2, 3, Some("conf-svc-a")),
        event(t + 3, 4, None),
        event(t + 3, 5, Some("conf-svc-b")),
    ];
    for e in &events {
        store.audit(e).await.expect("audit");
    }
    let recent = store.recent_audit(3).await.expect("recent_audit");
    assert_eq!(
        recent,
        vec![events[4].clone(), events[3].clone(), events[2].clone()],
        "newest first, insertion breaks ties"
    );
    let recent = store.recent_audit(5).await.expect("recent_audit");
    let kinds: Vec<&str> = recent.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "conf.audit.5",
            "conf.audit.4",
            "conf.audit.3",
            "conf.audit.2",
            "conf.audit.1"
        ],
        "the whole order"
    );
    assert!(
        store
            .recent_audit(0)
            .await
            .expect("recent_audit")
            .is_empty(),
        "limit 0: nothing"
    );
    let unique: HashSet<&str> = kinds.iter().copied().collect();
    assert_eq!(unique.len(), 5, "each event once");
}
