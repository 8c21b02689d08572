//! `oms-shared`: everything the `producer` and the `consumer` agree on.
//!
//! - [`config`]: connection settings (flags with env fallbacks) and URL redaction;
//! - [`deployment`]: the one start-up path (MySQL checked, stream layout, Redis, group);
//! - [`env_file`]: `OMS_ENV_FILE`, settings read like systemd's `EnvironmentFile=`;
//! - [`error`]: the typed errors of this crate, and which of them are transient;
//! - [`money`]: integer cents, parsed from and printed as MySQL DECIMAL strings;
//! - [`kpi`]: KPI arithmetic (revenue, count, average order value) and periods;
//! - [`order`]: what an order is: identities, rows and the stream chunk encoding
//!   ([`order::json`], the fast two-part writer of the producer's scan), the limits and the
//!   one email rule ([`order::rules`]), the payment decision ([`order::payment`]);
//! - [`redis`]: everything oms keeps in Redis: connections ([`redis::conn`]), key names
//!   ([`redis::keys`]), the orders stream and its dead letters ([`redis::queue`]), which
//!   partition an order goes to ([`redis::partition`]), pause ([`redis::pause`]), the
//!   data epoch ([`redis::epoch`]), live counts ([`redis::order_stats`]) and the
//!   exactly-once read models ([`redis::read_model`]);
//! - [`store`]: every SQL statement of the system, one module per table or concern
//!   ([`db`] = `store::db`: connection, database creation, embedded migrations);
//! - [`retry`]: the one retry policy (what is retried, backoff, when to give up);
//! - [`process`]: process start-up and exit of both binaries (runtime, logging, signals,
//!   exit codes);
//! - [`telemetry`]: tracing subscriber set-up (`LOG_FORMAT=text|json`), secrets scrubbed;
//!   traces exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
//! - [`trace_context`]: the W3C `traceparent` carried in stream entries (inject, extract);
//! - [`http_server`]: the bounded HTTP/1 server of every HTTP port (connections, timeouts);
//! - [`untrusted_text`]: client input escaped for logs and messages (no forged lines).

pub mod config;
pub use store::db;
pub mod deployment;
pub(crate) mod env_file;
pub mod error;
pub mod http_server;
pub mod kpi;
pub mod money;
pub mod order;
pub mod process;
pub mod redis;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod trace_context;
pub mod untrusted_text;

pub use error::{OmsError, Result};
