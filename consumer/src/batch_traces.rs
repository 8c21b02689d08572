//! The consumer's spans, and where they sit in a trace.
//!
//! A batch runs under one `batch` span (also the logs' span). Its entries carry the
//! W3C `traceparent` of the import that enqueued them (`OrderChunk::trace_parent`):
//!
//! - on an entry's **first delivery**, the batch span is a *child* of that import span,
//!   so an order's journey — import, batch, reserve, payment, settle, read-model apply —
//!   is one trace;
//! - on a **redelivery** (delivery count > 1: a consumer died, or a row failed and waits
//!   for its next attempt), the batch span starts a trace of its own with a *link* to the
//!   import's context instead (`oms.link` = `redelivery`): a retry minutes later does not
//!   stretch the original trace, and still leads to it;
//! - a batch holding entries of several imports (or traces) is the child of the first
//!   and links to the others (`oms.link` = `batched`).
//!
//! Under the batch span, each run of the workflow has `reserve`, `settle` (with `payment`
//! inside, in `oms_shared::store::orders`) and `apply` spans; isolating poison adds
//! `isolate_entry` / `isolate_row` spans around their runs. Attributes (set only on
//! sampled spans, so an unsampled batch pays nothing for them): `oms.partition`,
//! `oms.import_id`, `oms.attempt` (the delivery, as `--max-attempts` counts it),
//! `oms.retry` (in-process retries of this run), `oms.orders` and `oms.order.identity`
//! (the first [`MAX_IDENTITIES`] identities).
//!
//! With traces off (`oms_shared::telemetry::traces_enabled`), the spans are plain
//! `tracing` spans and nothing here does any work beyond creating them.

use oms_shared::store::orders::BatchRow;
use oms_shared::{telemetry, trace_context};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::intake::Batch;

/// The most order identities written on one span (a batch holds up to thousands).
pub const MAX_IDENTITIES: usize = 100;

/// Where a run of the workflow stands: what its spans are labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLabels {
    pub partition: u16,
    /// The delivery of the entries (1: first), as `--max-attempts` counts it.
    pub attempt: u64,
    /// In-process retries of this run so far (0: the first run).
    pub retry: u32,
}

/// The phases of one workflow run that get a span of their own (`payment` is the
/// store's own, inside `settle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Reserve,
    Settle,
    Apply,
}

/// The `batch` span of `batch` (fields for the logs: consumer, rows, entries, imports),
/// joined to its entries' traces and labelled when sampled.
pub fn batch_span(batch: &Batch, consumer: &str) -> tracing::Span {
    let imports = import_ids(
        batch
            .deliveries
            .iter()
            .filter_map(|d| d.body.as_ref().ok())
            .map(|c| c.import_id),
    );
    let span = tracing::info_span!("batch", consumer = %consumer, rows = batch.rows(), entries = batch.deliveries.len(), imports = ?imports);
    if !telemetry::traces_enabled() {
        return span;
    }
    let relations = trace_relations(batch.deliveries.iter().filter_map(|d| {
        let chunk = d.body.as_ref().ok()?;
        Some((d.deliveries, chunk.trace_parent.as_deref()?))
    }));
    if let Some(parent) = relations.parent {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    for (link, reason) in relations.links {
        span.add_link_with_attributes(link, vec![KeyValue::new("oms.link", reason.as_str())]);
    }
    if is_sampled(&span) {
        let rows: Vec<BatchRow> = batch
            .deliveries
            .iter()
            .filter_map(|d| d.body.as_ref().ok())
            .flat_map(|c| {
                c.rows.iter().map(|row| BatchRow {
                    import_id: c.import_id,
                    row,
                })
            })
            .collect();
        label(
            &span,
            &rows,
            RunLabels {
                partition: batch.partition,
                attempt: batch.attempt(),
                retry: 0,
            },
        );
    }
    span
}

/// The span of one phase of a workflow run over `rows`, labelled when sampled.
pub fn phase_span(phase: Phase, rows: &[BatchRow<'_>], run: RunLabels) -> tracing::Span {
    let span = match phase {
        Phase::Reserve => tracing::info_span!("reserve"),
        Phase::Settle => tracing::info_span!("settle"),
        Phase::Apply => tracing::info_span!("apply", outbox_id = tracing::field::Empty),
    };
    if telemetry::traces_enabled() && is_sampled(&span) {
        label(&span, rows, run);
    }
    span
}

/// Why a batch span links to a context rather than being its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkReason {
    /// The entry was delivered before: the retry gets a trace of its own.
    Redelivery,
    /// Another trace's entry in the same batch (a span has one parent).
    Batched,
}

impl LinkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkReason::Redelivery => "redelivery",
            LinkReason::Batched => "batched",
        }
    }
}

/// A batch span's parent and links.
#[derive(Debug, Default, PartialEq)]
pub struct TraceRelations {
    pub parent: Option<SpanContext>,
    pub links: Vec<(SpanContext, LinkReason)>,
}

/// The parent and links of a batch whose entries have these (delivery count,
/// `traceparent`): the first valid context of a first delivery is the parent; every other
/// distinct context is linked (a redelivered one as [`LinkReason::Redelivery`]). Malformed
/// values are skipped.
pub fn trace_relations<'a>(entries: impl IntoIterator<Item = (u64, &'a str)>) -> TraceRelations {
    let mut relations = TraceRelations::default();
    let same = |a: &SpanContext, b: &SpanContext| {
        a.trace_id() == b.trace_id() && a.span_id() == b.span_id()
    };
    for (deliveries, traceparent) in entries {
        let Some(context) = trace_context::extract(traceparent) else {
            continue;
        };
        let known = relations
            .parent
            .iter()
            .chain(relations.links.iter().map(|(l, _)| l))
            .any(|c| same(c, &context));
        if known {
            continue;
        }
        if deliveries > 1 {
            relations.links.push((context, LinkReason::Redelivery));
        } else if relations.parent.is_none() {
            relations.parent = Some(context);
        } else {
            relations.links.push((context, LinkReason::Batched));
        }
    }
    relations
}

/// Whether `span` is exported (its OpenTelemetry side sampled). Starts that side.
fn is_sampled(span: &tracing::Span) -> bool {
    span.context().span().span_context().is_sampled()
}

/// Sets the oms attributes of a span over `rows`.
fn label(span: &tracing::Span, rows: &[BatchRow<'_>], run: RunLabels) {
    span.set_attribute("oms.partition", i64::from(run.partition));
    span.set_attribute("oms.attempt", run.attempt as i64);
    span.set_attribute("oms.retry", i64::from(run.retry));
    span.set_attribute("oms.orders", rows.len() as i64);
    let imports = import_ids(rows.iter().map(|r| r.import_id));
    match imports.as_slice() {
        [one] => span.set_attribute("oms.import_id", *one as i64),
        many => span.set_attribute(
            "oms.import_id",
            Value::Array(Array::I64(many.iter().map(|&i| i as i64).collect())),
        ),
    }
    let identities: Vec<StringValue> = rows
        .iter()
        .take(MAX_IDENTITIES)
        .map(|r| StringValue::from(r.row.identity.as_str().to_string()))
        .collect();
    span.set_attribute(
        "oms.order.identity",
        Value::Array(Array::String(identities)),
    );
}

/// The distinct import ids, in ascending order.
fn import_ids(ids: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const B: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_first_delivery_is_a_child_of_the_import_span() {
        let r = trace_relations([(1, A), (1, A)]);
        assert_eq!(r.parent.unwrap().span_id().to_string(), "00f067aa0ba902b7");
        assert!(r.links.is_empty(), "{:?}", r.links);
    }

    #[test]
    fn a_redelivery_links_to_the_import_span_instead() {
        let r = trace_relations([(2, A)]);
        assert_eq!(r.parent, None);
        assert_eq!(r.links.len(), 1);
        assert_eq!(
            r.links[0].0.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(r.links[0].1, LinkReason::Redelivery);
    }

    #[test]
    fn other_traces_of_a_batch_are_linked_once_and_bad_values_skipped() {
        let r = trace_relations([(1, "garbage"), (1, A), (1, B), (1, B), (3, A)]);
        assert_eq!(r.parent.unwrap().span_id().to_string(), "00f067aa0ba902b7");
        let links: Vec<(String, LinkReason)> = r
            .links
            .iter()
            .map(|(c, why)| (c.span_id().to_string(), *why))
            .collect();
        assert_eq!(
            links,
            vec![("b7ad6b7169203331".to_string(), LinkReason::Batched)]
        );
    }

    #[test]
    fn entries_without_context_make_a_root() {
        assert_eq!(trace_relations([]), TraceRelations::default());
    }

    #[test]
    fn import_ids_are_distinct_and_sorted() {
        assert_eq!(import_ids([3, 1, 3, 2].into_iter()), vec![1, 2, 3]);
    }
}
