//! `otlp-sink [ADDR]`: a collector stand-in for benchmarks. Receives OTLP/HTTP protobuf
//! trace exports on ADDR (default `127.0.0.1:4318`; `127.0.0.1:0` picks a port), decodes
//! every request as a real collector would ([`oms_tests::otlp_receiver`]), counts the
//! spans and keeps none. Prints `listening on http://ADDR` at start, and on SIGTERM or
//! SIGINT the spans and requests received, then exits 0.

use std::process::ExitCode;

use oms_tests::otlp_receiver::OtlpReceiver;

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".into());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let receiver = OtlpReceiver::start_on(addr, false);
    println!("listening on {}", receiver.endpoint());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    println!(
        "received {} spans in {} requests",
        receiver.span_count(),
        receiver.request_count()
    );
    ExitCode::SUCCESS
}
