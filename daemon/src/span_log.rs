//! Test support: a tracing layer that keeps every span's fields, so tests
//! can show what a span recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span: its name and the fields recorded so far.
pub type SpanFields = (String, BTreeMap<String, String>);

/// Spans seen while the guard of [`SpanLog::install`] lives.
#[derive(Debug, Clone, Default)]
pub struct SpanLog {
    spans: Arc<Mutex<BTreeMap<u64, SpanFields>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

thread_local! {
    /// The log of the test running on this thread, if it installed one.
    static CURRENT: std::cell::RefCell<Option<SpanLog>> = const { std::cell::RefCell::new(None) };
}

/// The one global layer: it hands each span to the log of its thread.
/// (A thread-local default subscriber is not enough: another test thread
/// seeing a callsite first with no subscriber can cache it as disabled.)
struct Routed;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Routed {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        CURRENT.with(|c| {
            if let Some(log) = &*c.borrow() {
                let mut fields = BTreeMap::new();
                attrs.record(&mut Fields(&mut fields));
                log.spans
                    .lock()
                    .expect("span log")
                    .insert(id.into_u64(), (attrs.metadata().name().to_string(), fields));
            }
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        CURRENT.with(|c| {
            if let Some(log) = &*c.borrow() {
                if let Some((_, fields)) =
                    log.spans.lock().expect("span log").get_mut(&id.into_u64())
                {
                    values.record(&mut Fields(fields));
                }
            }
        });
    }
}

/// Stops recording into a [`SpanLog`] when dropped.
#[derive(Debug)]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.borrow_mut().take());
    }
}

impl SpanLog {
    /// Records the spans of this thread until the guard drops (tests on a
    /// current-thread runtime).
    pub fn install() -> (SpanLog, Guard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let sub = tracing_subscriber::registry().with(Routed);
            tracing::subscriber::set_global_default(sub)
                .expect("no other global subscriber in tests");
        });
        let log = SpanLog::default();
        CURRENT.with(|c| *c.borrow_mut() = Some(log.clone()));
        (log, Guard(()))
    }

    /// The spans named `name`, oldest first.
    pub fn named(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.spans
            .lock()
            .expect("span log")
            .values()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect()
    }
}
