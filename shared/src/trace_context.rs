//! W3C Trace Context: the `traceparent` value that carries a span's context from the
//! producer's import to the consumers, in a field of each stream entry.
//!
//! `00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`, e.g.
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01` (flag `01`: sampled).
//! [`inject`] writes it from an OpenTelemetry context, [`extract`] reads it back as the
//! remote span context a consumer's span takes as its parent or links to. Both are pure
//! and go through OpenTelemetry's own W3C propagator, so what one writes the other (and
//! any W3C implementation) reads. Entries are untrusted: a value that is not a valid
//! `traceparent` (or is longer than [`MAX_TRACEPARENT_BYTES`]) is ignored, never an error
//! of the entry.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The name of the W3C header, and of the stream entry's field that carries it.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The longest `traceparent` looked at (version 00 is 55 bytes; later versions may append
/// fields): anything longer is ignored unread.
pub(crate) const MAX_TRACEPARENT_BYTES: usize = 256;

/// The `traceparent` of `cx`'s span; `None` when `cx` holds no valid span context (no
/// span, or traces are off).
pub(crate) fn inject(cx: &Context) -> Option<String> {
    let mut carrier = TraceparentCarrier(None);
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.0
}

/// The remote span context a `traceparent` value names; `None` when it is not a valid
/// W3C `traceparent` (wrong length or version, non-hex, all-zero ids, ...).
pub fn extract(traceparent: &str) -> Option<SpanContext> {
    if traceparent.len() > MAX_TRACEPARENT_BYTES || !has_w3c_shape(traceparent) {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&TraceparentValue(traceparent));
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// Whether `traceparent` is a valid W3C `traceparent` ([`extract`] reads it).
pub(crate) fn is_valid(traceparent: &str) -> bool {
    extract(traceparent).is_some()
}

/// `version-traceid-parentid-flags` with exactly 2, 32, 16 and 2 lower-case hex digits
/// (version 00 has nothing after the flags; a later version may append `-...`). The
/// propagator alone also takes shorter ids.
fn has_w3c_shape(traceparent: &str) -> bool {
    let mut parts = traceparent.split('-');
    let hex = |part: Option<&str>, len: usize| {
        part.is_some_and(|p| {
            p.len() == len
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    let version = parts.next();
    let shaped =
        hex(version, 2) && hex(parts.next(), 32) && hex(parts.next(), 16) && hex(parts.next(), 2);
    shaped && (version != Some("00") || parts.next().is_none())
}

/// A carrier of one header, `traceparent`, written by the propagator.
struct TraceparentCarrier(Option<String>);

impl Injector for TraceparentCarrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// A carrier holding only a `traceparent` value, read by the propagator.
struct TraceparentValue<'a>(&'a str);

impl Extractor for TraceparentValue<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    fn remote(trace: u128, span: u64, flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            flags,
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn a_sampled_context_is_written_as_a_version_00_traceparent() {
        let span = remote(
            0x4bf92f3577b34da6a3ce929d0e0e4736,
            0x00f067aa0ba902b7,
            TraceFlags::SAMPLED,
        );
        let cx = Context::new().with_remote_span_context(span);
        assert_eq!(
            inject(&cx).as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }

    #[test]
    fn an_unsampled_context_travels_too_so_that_consumers_follow_the_decision() {
        let span = remote(7, 9, TraceFlags::default());
        let cx = Context::new().with_remote_span_context(span);
        assert_eq!(
            inject(&cx).as_deref(),
            Some("00-00000000000000000000000000000007-0000000000000009-00")
        );
    }

    #[test]
    fn no_span_no_traceparent() {
        assert_eq!(inject(&Context::new()), None);
    }

    #[test]
    fn what_inject_writes_extract_reads_back_as_a_remote_context() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let span = remote(0xabc, 0xdef, flags);
            let text = inject(&Context::new().with_remote_span_context(span.clone())).unwrap();
            let back = extract(&text).expect("valid");
            assert_eq!(back.trace_id(), span.trace_id());
            assert_eq!(back.span_id(), span.span_id());
            assert_eq!(back.is_sampled(), span.is_sampled());
            assert!(back.is_remote());
        }
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "00",
            "garbage",
            // all-zero trace id, all-zero span id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff is forbidden; non-hex; short ids
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            // upper case; version 00 with a trailing field
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert!(extract(bad).is_none(), "{bad:?} accepted");
            assert!(!is_valid(bad));
        }
        let long = format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01{}",
            "-x".repeat(200)
        );
        assert!(extract(&long).is_none(), "longer than the bound: unread");
    }

    #[test]
    fn a_valid_value_is_read_with_its_ids_and_flags() {
        let span = extract("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span.is_sampled());
    }
}
