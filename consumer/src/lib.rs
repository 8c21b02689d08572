//! The worker daemon of oms.
//!
//! Data flow inside one process (see ARCHITECTURE.md for the whole system):
//!
//! ```text
//!  intake::read_new ──┐                      ┌─> batch::process_batch ─> MySQL (2 tx)
//!                     ├─> bounded channel ───┤        │
//!  intake::claim_idle ┘   (batches of rows)  └─> ...  └─> Redis: read models, XACK, dead letters
//!  housekeeping: queue gauges, stream trimming, outbox sweeper
//!  http: /metrics /healthz /readyz
//! ```
//!
//! Traces (when `OTEL_EXPORTER_OTLP_ENDPOINT` is set): [`batch_traces`] puts each batch
//! span under the import span its entries carry (a link on redeliveries).
//!
//! Shutdown ([`app::run`]): the token is cancelled, intake stops reading and drops its
//! sender, workers finish the batches they hold and acknowledge them, then everything
//! else stops.

pub mod app;
mod batch;
mod batch_traces;
pub mod cli;
pub mod config;
mod dead_rows;
mod health;
mod housekeeping;
mod http;
mod intake;
mod live_stats;
pub mod metrics;
mod pause;

mod state;
