//! `verigate-bench codec`: single-thread encode / decode / round trip of a
//! realistic submit_sm.

use crate::msg;
use bytes::{Bytes, BytesMut};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};
use verigate_codecs::smpp::{Body, FrameDecoder, Pdu};

/// Encode + decode round trips per second per core we aim for.
pub const TARGET_ROUNDTRIP_PER_SEC: f64 = 2_000_000.0;

#[derive(Debug, clap::Args)]
pub struct CodecArgs {
    /// Seconds spent on each measurement (encode, decode, round trip, each
    /// codec).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Skip the rusmpp 0.4.0 reference measurements.
    #[arg(long)]
    no_rusmpp: bool,
}

/// Runs `op` in batches until `secs` have passed; returns ops per second.
pub(crate) fn measure(secs: f64, mut op: impl FnMut(u64)) -> f64 {
    const BATCH: u64 = 4096;
    // Warm up caches and branch predictors.
    for i in 0..BATCH * 4 {
        op(i);
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    loop {
        for i in 0..BATCH {
            op(n + i);
        }
        n += BATCH;
        let el = start.elapsed();
        if el >= budget {
            return n as f64 / el.as_secs_f64();
        }
    }
}

fn line(name: &str, ops: f64) {
    println!(
        "  {name:<30} {:>8.2} M ops/s  ({:>6.1} ns/op)",
        ops / 1e6,
        1e9 / ops
    );
}

pub fn run(a: CodecArgs) -> Result<(), String> {
    if a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err("--seconds must be positive".into());
    }
    let sm = msg::ours(1);
    let pdu = Pdu::new(1, Body::SubmitSm(sm));
    let wire: Bytes = pdu.to_bytes().map_err(|e| e.to_string())?;
    // Sanity: the PDU decodes back to itself.
    let back = Pdu::decode(wire.clone()).map_err(|e| e.to_string())?;
    if back != pdu {
        return Err("submit_sm does not round-trip".into());
    }
    println!(
        "codec: submit_sm of {} bytes (TON/NPI addresses, 20-char GSM text, registered_delivery 1, 1 TLV), {:.1} s per figure, 1 thread",
        wire.len(),
        a.seconds
    );
    println!("verigate-codecs:");

    // Encode: into a reused buffer, as the session does into its tx buffer.
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut p = pdu.clone();
    let encode = measure(a.seconds, |i| {
        if buf.len() > 60 * 1024 {
            buf.clear();
        }
        p.sequence = i as u32;
        black_box(&p).encode(black_box(&mut buf)).expect("encode");
    });
    line("encode", encode);

    // Decode: one complete frame to a typed Pdu (dropped each time).
    let decode = measure(a.seconds, |_| {
        let frame = black_box(&wire).clone();
        black_box(Pdu::decode(frame).expect("decode"));
    });
    line("decode", decode);

    // Round trip the way a session sees it: encode into a stream buffer,
    // cut the frame with FrameDecoder, decode it.
    let framer = FrameDecoder::default();
    let mut stream = BytesMut::with_capacity(64 * 1024);
    let mut p = pdu.clone();
    let roundtrip = measure(a.seconds, |i| {
        p.sequence = i as u32;
        black_box(&p).encode(&mut stream).expect("encode");
        let frame = framer
            .decode(black_box(&mut stream))
            .expect("frame")
            .expect("complete frame");
        black_box(Pdu::decode(frame).expect("decode"));
    });
    line("encode+decode round trip", roundtrip);
    let met = roundtrip >= TARGET_ROUNDTRIP_PER_SEC;
    println!(
        "  target ≥ {:.1} M round trips/s per core: {}",
        TARGET_ROUNDTRIP_PER_SEC / 1e6,
        if met { "MET" } else { "NOT MET" }
    );

    let mut reference = serde_json::Value::Null;
    if !a.no_rusmpp {
        let (e, d, rt, len) = rusmpp_figures(a.seconds)?;
        println!("rusmpp 0.4.0 (tokio CommandCodec, same message, {len} bytes; reference only):");
        line("encode", e);
        line("decode", d);
        line("encode+decode round trip", rt);
        println!(
            "  ours / rusmpp round trip: {:.2}x",
            roundtrip / rt.max(f64::MIN_POSITIVE)
        );
        reference = json!({
            "pdu_bytes": len,
            "encode_ops_per_sec": e.round(),
            "decode_ops_per_sec": d.round(),
            "roundtrip_ops_per_sec": rt.round(),
        });
    }
    println!(
        "{}",
        json!({
            "bench": "codec",
            "pdu": "submit_sm",
            "pdu_bytes": wire.len(),
            "seconds_per_figure": a.seconds,
            "encode_ops_per_sec": encode.round(),
            "decode_ops_per_sec": decode.round(),
            "roundtrip_ops_per_sec": roundtrip.round(),
            "target_roundtrip_ops_per_sec": TARGET_ROUNDTRIP_PER_SEC,
            "target_met": met,
            "rusmpp": reference,
        })
    );
    Ok(())
}

/// The same three figures for rusmpp 0.4.0 through its tokio codec.
fn rusmpp_figures(secs: f64) -> Result<(f64, f64, f64, usize), String> {
    use rusmpp::{Command, CommandStatus};
    use tokio_util::codec::{Decoder, Encoder};

    let mut codec = rusmpp::tokio_codec::CommandCodec::new();
    let cmd = Command::builder()
        .status(CommandStatus::EsmeRok)
        .sequence_number(1)
        .pdu(msg::rusmpp(1));
    let mut wire = BytesMut::new();
    codec.encode(&cmd, &mut wire).map_err(|e| e.to_string())?;
    let wire = wire.freeze();
    let len = wire.len();
    {
        let mut b = BytesMut::from(&wire[..]);
        let back = codec
            .decode(&mut b)
            .map_err(|e| e.to_string())?
            .ok_or("rusmpp: incomplete frame")?;
        if back != cmd {
            return Err("rusmpp submit_sm does not round-trip".into());
        }
    }

    let mut buf = BytesMut::with_capacity(64 * 1024);
    let encode = measure(secs, |_| {
        if buf.len() > 60 * 1024 {
            buf.clear();
        }
        codec
            .encode(black_box(&cmd), black_box(&mut buf))
            .expect("encode");
    });
    let mut inbuf = BytesMut::with_capacity(1024);
    let decode = measure(secs, |_| {
        inbuf.extend_from_slice(black_box(&wire));
        black_box(codec.decode(&mut inbuf).expect("decode").expect("frame"));
    });
    let mut stream = BytesMut::with_capacity(64 * 1024);
    let roundtrip = measure(secs, |_| {
        codec.encode(black_box(&cmd), &mut stream).expect("encode");
        black_box(
            codec
                .decode(black_box(&mut stream))
                .expect("decode")
                .expect("frame"),
        );
    });
    Ok((encode, decode, roundtrip, len))
}
