//! The webhook queue.

use super::*;

/// Every check of this domain, on `store`.
pub async fn run<S: WebhookStore>(store: &S) {
    webhook_queue(store).await;
    deliveries_keep_their_method_credential_deadline_and_topic(store).await;
}

/// The webhook queue: due jobs oldest first with a lease, reclaimed after
/// it ran out, retried at their time, removed when completed or dropped.
pub async fn webhook_queue<S: WebhookStore>(store: &S) {
    let t = T_WEBHOOKS;
    let job = |id: &str, at: Millis| WebhookJob {
        id: id.to_owned(),
        service: "conf-hooks".to_owned(),
        url: "https://example.invalid/hook".to_owned(),
        body: format!("{{\"event\":\"verification.approved\",\"id\":\"{id}\"}}"),
        attempts: 0,
        next_attempt_at: at,
        last_error: None,
        method: HttpMethod::Post,
        credential: None,
        deliver_until: None,
        topic: None,
    };
    let j1 = job("wh_conf_1", t);
    let j2 = job("wh_conf_2", t + 1);
    let j3 = job("wh_conf_3", t + 1_000);
    for j in [&j1, &j2, &j3] {
        store.enqueue_webhook(j).await.expect("enqueue_webhook");
    }
    let dup = store.enqueue_webhook(&j1).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "a duplicate job id is a Conflict, got {dup:?}"
    );

    let c = store
        .claim_webhooks(t + 1, 10, 100)
        .await
        .expect("claim_webhooks");
    let expect = |j: &WebhookJob, attempts: u32, err: Option<&str>, next: Millis| WebhookJob {
        attempts,
        last_error: err.map(str::to_owned),
        next_attempt_at: next,
        ..j.clone()
    };
    let first_j1 = lease_of(&c, &j1.id);
    assert_eq!(
        jobs(c),
        vec![expect(&j1, 1, None, t), expect(&j2, 1, None, t + 1)],
        "due jobs, oldest first, attempt counted"
    );
    assert!(
        store
            .claim_webhooks(t + 2, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "leased jobs are not handed out"
    );
    let c = store
        .claim_webhooks(t + 101, 1, 100)
        .await
        .expect("claim_webhooks");
    let held_j1 = lease_of(&c, &j1.id);
    assert_eq!(
        jobs(c),
        vec![expect(&j1, 2, None, t)],
        "lease ran out: claimed again, oldest first, up to the limit"
    );
    for late in [
        store.complete_webhook(&first_j1).await,
        store.retry_webhook(&first_j1, "late", Some(t + 102)).await,
    ] {
        assert!(
            matches!(late, Err(StoreError::LeaseLost(_))),
            "a holder whose job was claimed again cannot complete or requeue it, got {late:?}"
        );
    }
    assert_eq!(
        store
            .extend_webhooks(&[first_j1, held_j1.clone()], t + 150)
            .await
            .expect("extend_webhooks"),
        vec![Extension::TakenOver, Extension::Held],
        "only the latest claim extends"
    );
    store
        .complete_webhook(&held_j1)
        .await
        .expect("complete_webhook");
    assert_eq!(
        store
            .extend_webhooks(std::slice::from_ref(&held_j1), t + 150)
            .await
            .expect("extend_webhooks"),
        vec![Extension::Finished],
        "a delivered job is gone: nothing to extend, nothing lost"
    );
    store
        .complete_webhook(&held_j1)
        .await
        .expect("completing a job already gone is no error");
    let c = store
        .claim_webhooks(t + 101, 10, 100)
        .await
        .expect("claim_webhooks");
    let held_j2 = lease_of(&c, &j2.id);
    assert_eq!(
        jobs(c),
        vec![expect(&j2, 2, None, t + 1)],
        "a completed job is gone"
    );

    store
        .retry_webhook(&held_j2, "HTTP 503", Some(t + 500))
        .await
        .expect("retry_webhook");
    assert!(
        store
            .claim_webhooks(t + 499, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "a retry waits for its time"
    );
    let c = store
        .claim_webhooks(t + 1_000, 10, 100)
        .await
        .expect("claim_webhooks");
    let (held_j2, held_j3) = (lease_of(&c, &j2.id), lease_of(&c, &j3.id));
    assert_eq!(
        jobs(c),
        vec![
            expect(&j2, 3, Some("HTTP 503"), t + 500),
            expect(&j3, 1, None, t + 1_000)
        ],
        "a retry is due at its time with its error; oldest first"
    );
    store
        .retry_webhook(&held_j2, "HTTP 410", None)
        .await
        .expect("retry_webhook");
    store
        .complete_webhook(&held_j3)
        .await
        .expect("complete_webhook");
    assert!(
        store
            .claim_webhooks(t + 1_000_000, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "dropped and completed jobs are gone"
    );
}

/// A job's method, named credential, deadline and topic come back as
/// queued; jobs are listed by topic (status events never are).
pub async fn deliveries_keep_their_method_credential_deadline_and_topic<S: WebhookStore>(
    store: &S,
) {
    let t = T_WEBHOOKS + 10_000_000;
    let put = WebhookJob {
        method: HttpMethod::Put,
        credential: Some("registry".into()),
        deliver_until: Some(t + 86_400_000),
        topic: Some("bindings".into()),
        ..WebhookJob::post(
            "wh_conf_put".into(),
            "conf-hooks",
            "https://carrier.example/v1/registry/bindings/%2B447400000001/conf-hooks",
            "{}".into(),
            t,
        )
    };
    let delete = WebhookJob {
        method: HttpMethod::Delete,
        id: "wh_conf_delete".into(),
        next_attempt_at: t + 1,
        ..put.clone()
    };
    let status = WebhookJob::post(
        "wh_conf_status".into(),
        "conf-hooks",
        "https://app.example/hook",
        "{}".into(),
        t,
    );
    for j in [&put, &delete, &status] {
        store.enqueue_webhook(j).await.expect("enqueue_webhook");
    }
    let listed = store
        .pending_webhooks("bindings", Some("conf-hooks"), 10)
        .await
        .expect("pending_webhooks");
    assert_eq!(
        listed,
        vec![put.clone(), delete.clone()],
        "by topic, oldest first"
    );
    assert!(store
        .pending_webhooks("bindings", Some("other"), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.pending_webhooks("bindings", None, 1).await.unwrap(),
        vec![put.clone()],
        "up to the limit"
    );
    let c = store.claim_webhooks(t + 1, 10, 100).await.expect("claim");
    // Only this check's jobs (other domains' batteries may leave theirs).
    let mine = ["wh_conf_put", "wh_conf_delete", "wh_conf_status"];
    let mut got: Vec<WebhookJob> = jobs(c.clone())
        .into_iter()
        .filter(|j| mine.contains(&j.id.as_str()))
        .collect();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        got,
        vec![
            WebhookJob {
                attempts: 1,
                ..delete
            },
            WebhookJob { attempts: 1, ..put },
            WebhookJob {
                attempts: 1,
                ..status
            },
        ]
    );
    for j in c.iter().filter(|j| mine.contains(&j.lease.id.as_str())) {
        store.complete_webhook(&j.lease).await.expect("complete");
    }
}
