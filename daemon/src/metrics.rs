//! Prometheus metrics. Labels are low-cardinality by design: channels,
//! outcomes, SMSC names, states — never phone numbers or codes.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::OnceLock;

/// Every metric the daemon exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Verification outcomes by channel. Starts: `started`, `existing`,
    /// `resent`, `rate_limited`, `rejected_input`, `error`. Closes, counted
    /// once when they happen: `approved`, `max_attempts_reached`, `expired`,
    /// `canceled`. Checks that close nothing: `wrong_code`,
    /// `check_on_closed`.
    pub verifications: IntCounterVec,
    /// SMPP binds up, per SMSC.
    pub binds_up: IntGaugeVec,
    /// Seconds from claiming a message to its submit_sm_resp.
    pub submit_latency: Histogram,
    /// Send results (`submitted`, `rejected`, `retry`, `requeued`).
    pub sends: IntCounterVec,
    /// Delivery receipts by state.
    pub dlrs: IntCounterVec,
    /// Throttle responses (0x58/0x14) from SMSCs.
    pub throttles: IntCounter,
    /// Outbox messages by state (set at scrape time).
    pub queue_depth: IntGaugeVec,
    /// Call outcomes by kind (`voice`, `flash_call`) and state.
    pub calls: IntCounterVec,
    /// SIP dialogs the stack holds (set at scrape time; 0 when no call is
    /// up, so a leak shows).
    pub sip_dialogs: prometheus::IntGauge,
    /// Voice-gateway requests by outcome (`queued`, `repeated`,
    /// `forbidden`, `rejected_input`, `rate_limited`, `error`).
    pub gateway_requests: IntCounterVec,
    /// Mobile-originated SMS by outcome (`stored`, `redelivered`, then
    /// `login_completed`, `unknown`, `expired`, `used`, `no_token`, `unrouted`).
    pub mos: IntCounterVec,
    /// Seconds from an MO's deliver_sm being taken to its login's session
    /// being stored (MO stored, acknowledged, login completed).
    pub mo_login_latency: Histogram,
    /// MO replies held back, by the budget that refused them.
    pub mo_replies_suppressed: IntCounterVec,
    /// Durable-queue jobs whose lease another claim took over while this
    /// process held them (by queue: `outbox`, `calls`, `webhooks`); each
    /// was dropped here unfinished, for its new holder to do.
    pub leases_lost: IntCounterVec,
    /// The relay's registrations and payments by final outcome (`kind`
    /// `session` or `transaction`; `outcome` registered / executed /
    /// declined, or a refusal's code), and its front ends' refusals
    /// before anything was stored (`kind` `vouch`).
    pub relay: IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("verigate".into()), None).expect("registry");
        let verifications = IntCounterVec::new(
            Opts::new("verifications_total", "Verification outcomes by channel"),
            &["channel", "outcome"],
        )
        .expect("metric");
        let binds_up = IntGaugeVec::new(Opts::new("smpp_binds_up", "SMPP binds up"), &["smsc"])
            .expect("metric");
        let submit_latency = Histogram::with_opts(
            HistogramOpts::new("submit_latency_seconds", "Claim to submit_sm_resp").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("metric");
        let sends =
            IntCounterVec::new(Opts::new("sends_total", "Outbox send results"), &["result"])
                .expect("metric");
        let dlrs = IntCounterVec::new(
            Opts::new("dlrs_total", "Delivery receipts by state"),
            &["state"],
        )
        .expect("metric");
        let throttles = IntCounter::new("smpp_throttles_total", "Throttle responses from SMSCs")
            .expect("metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("outbox_depth", "Outbox messages by state"),
            &["state"],
        )
        .expect("metric");
        let calls = IntCounterVec::new(
            Opts::new("calls_total", "Call outcomes by kind and state"),
            &["kind", "state"],
        )
        .expect("metric");
        let sip_dialogs =
            prometheus::IntGauge::new("sip_dialogs", "SIP dialogs held").expect("metric");
        let mos = IntCounterVec::new(
            Opts::new("mo_total", "Mobile-originated SMS by outcome"),
            &["outcome"],
        )
        .expect("metric");
        let mo_replies_suppressed = IntCounterVec::new(
            Opts::new(
                "mo_replies_suppressed_total",
                "SMS replies to MOs not sent because a reply budget was spent",
            ),
            &["scope"],
        )
        .expect("metric");
        let mo_login_latency = Histogram::with_opts(
            HistogramOpts::new("mo_login_seconds", "MO taken to its login's session stored")
                .buckets(vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ]),
        )
        .expect("metric");
        let gateway_requests = IntCounterVec::new(
            Opts::new(
                "voice_gateway_requests_total",
                "Voice-gateway requests by outcome",
            ),
            &["outcome"],
        )
        .expect("metric");
        let leases_lost = IntCounterVec::new(
            Opts::new(
                "leases_lost_total",
                "Queue jobs dropped because another claim took their lease over",
            ),
            &["queue"],
        )
        .expect("metric");
        let relay = IntCounterVec::new(
            Opts::new(
                "txrelay_outcomes_total",
                "Relay sessions and payments by outcome, and refusals at the carrier's check",
            ),
            &["kind", "outcome"],
        )
        .expect("metric");
        for c in [
            Box::new(leases_lost.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(relay.clone()),
            Box::new(calls.clone()),
            Box::new(sip_dialogs.clone()),
            Box::new(gateway_requests.clone()),
            Box::new(mos.clone()),
            Box::new(mo_replies_suppressed.clone()),
            Box::new(mo_login_latency.clone()),
            Box::new(verifications.clone()),
            Box::new(binds_up.clone()),
            Box::new(submit_latency.clone()),
            Box::new(sends.clone()),
            Box::new(dlrs.clone()),
            Box::new(throttles.clone()),
            Box::new(queue_depth.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Metrics {
            registry,
            verifications,
            binds_up,
            submit_latency,
            sends,
            dlrs,
            throttles,
            queue_depth,
            calls,
            sip_dialogs,
            gateway_requests,
            mos,
            mo_replies_suppressed,
            mo_login_latency,
            leases_lost,
            relay,
        }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Counts a verification outcome.
pub fn verification(channel: &str, outcome: &str) {
    get()
        .verifications
        .with_label_values(&[channel, outcome])
        .inc();
}

/// Counts a call outcome.
pub fn call(kind: &str, state: &str) {
    get().calls.with_label_values(&[kind, state]).inc();
}

/// Counts a relay outcome.
pub fn relay(kind: &str, outcome: &str) {
    get().relay.with_label_values(&[kind, outcome]).inc();
}

/// Counts an MO outcome.
pub fn mo(outcome: &str) {
    get().mos.with_label_values(&[outcome]).inc();
}

/// Counts an MO reply a budget held back.
pub fn mo_reply_suppressed(scope: &str) {
    get()
        .mo_replies_suppressed
        .with_label_values(&[scope])
        .inc();
}

/// Counts a voice-gateway request outcome.
pub fn gateway_request(outcome: &str) {
    get().gateway_requests.with_label_values(&[outcome]).inc();
}

/// Upper bounds (µs) of the RTP send-lateness histogram's buckets.
const RTP_LATENESS_BUCKETS_MICROS: [u64; 9] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// The media workers' send lateness as a Prometheus histogram
/// (`verigate_rtp_send_lateness_seconds`: due time to `sendto` returning,
/// per packet, since start) and the packets skipped because a worker woke
/// too late to catch up (`verigate_rtp_packets_skipped_total`).
pub fn rtp_lateness_text(l: &verigate_codecs::media::pacer::Lateness) -> String {
    let mut s = String::from(
        "# HELP verigate_rtp_send_lateness_seconds RTP packets by time from their due time to being sent\n\
         # TYPE verigate_rtp_send_lateness_seconds histogram\n",
    );
    for le in RTP_LATENESS_BUCKETS_MICROS {
        s += &format!(
            "verigate_rtp_send_lateness_seconds_bucket{{le=\"{}\"}} {}\n",
            le as f64 / 1e6,
            l.count_below_micros(le)
        );
    }
    s += &format!(
        "verigate_rtp_send_lateness_seconds_bucket{{le=\"+Inf\"}} {c}\n\
         verigate_rtp_send_lateness_seconds_sum {}\n\
         verigate_rtp_send_lateness_seconds_count {c}\n\
         # HELP verigate_rtp_packets_skipped_total RTP packets not sent because a media worker woke too late\n\
         # TYPE verigate_rtp_packets_skipped_total counter\n\
         verigate_rtp_packets_skipped_total {}\n",
        l.sum_micros() as f64 / 1e6,
        l.skipped,
        c = l.count(),
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters() {
        super::verification("sms", "approved");
        let text = super::get().render();
        assert!(
            text.contains("verigate_verifications_total{channel=\"sms\",outcome=\"approved\"}"),
            "{text}"
        );
    }

    #[test]
    fn rtp_lateness_renders_as_a_cumulative_histogram() {
        let mut l = verigate_codecs::media::pacer::Lateness::default();
        for micros in [100, 300, 1_500, 30_000] {
            l.record(micros);
        }
        l.skipped = 2;
        let t = super::rtp_lateness_text(&l);
        for want in [
            "verigate_rtp_send_lateness_seconds_bucket{le=\"0.00025\"} 1\n",
            "verigate_rtp_send_lateness_seconds_bucket{le=\"0.002\"} 3\n",
            "verigate_rtp_send_lateness_seconds_bucket{le=\"0.02\"} 3\n",
            "verigate_rtp_send_lateness_seconds_bucket{le=\"0.05\"} 4\n",
            "verigate_rtp_send_lateness_seconds_bucket{le=\"+Inf\"} 4\n",
            "verigate_rtp_send_lateness_seconds_sum 0.0319\n",
            "verigate_rtp_send_lateness_seconds_count 4\n",
            "verigate_rtp_packets_skipped_total 2\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }
}
