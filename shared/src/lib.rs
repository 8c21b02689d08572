//! `oms-shared`: everything the `producer` and the `consumer` agree on.
//!
//! - [`config`]: connection settings (flags with env fallbacks) and URL redaction;
//! - [`deployment`]: the one start-up path (MySQL checked, stream layout, Redis, group);
//! - [`env_file`]: `OMS_ENV_FILE`, settings read like systemd's `EnvironmentFile=`;
//! - [`error`]: the typed errors of this crate, and which of them are transient;
//! - [`money`]: integer cents, parsed from and printed as MySQL DECIMAL strings;
//! - [`keys`]: every Redis key name, in one place;
//! - [`order`]: order identities, order rows and the stream chunk encoding;
//! - [`order_json`]: the chunk encoding written in two parts, fast (the producer's scan);
//! - [`order_rules`]: the limits of rows and entries, and the one email rule;
//! - [`partition`]: which partition of the stream an order goes to (hash of the email);
//! - [`process`]: process start-up and exit of both binaries (runtime, logging, signals,
//!   exit codes);
//! - [`payment`]: the deterministic payment simulator;
//! - [`kpi`]: KPI arithmetic (revenue, count, average order value) and period keys;
//! - [`db`] (= `store::db`): MySQL connection, database creation and embedded migrations;
//! - [`redis_conn`]: Redis connection pools;
//! - [`retry`]: the one retry policy (what is retried, backoff, when to give up);
//! - [`redis_epoch`]: whether Redis still holds the data MySQL recorded (lost on a restart
//!   without persistence);
//! - [`queue`]: the orders stream, its consumer group, trimming and dead letters;
//! - [`queue_control`]: pausing and resuming every consumer (`P queue:paused`);
//! - [`order_stats`]: live per-minute and per-second counts of orders that ended;
//! - [`read_model`]: the exactly-once update of KPIs and leaderboard in Redis;
//! - [`store`]: every SQL statement of the system;
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
pub mod keys;
pub mod kpi;
pub mod money;
pub mod order;
pub mod order_json;
pub mod order_rules;
pub mod order_stats;
pub mod partition;
pub mod payment;
pub mod process;
pub mod queue;
pub mod queue_control;
pub mod read_model;
pub mod redis_conn;
pub mod redis_epoch;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod trace_context;
pub mod untrusted_text;

pub use error::{OmsError, Result};
