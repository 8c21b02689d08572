//! Everything oms keeps in Redis, and the only code that names Redis keys or speaks the
//! stream protocol:
//!
//! - [`conn`]: connection pools (one Redis or a cluster) and `WAIT` for replicas;
//! - [`keys`]: every key name, in one place;
//! - [`partition`]: which partition of the stream an order goes to (hash of the email);
//! - [`queue`]: the orders stream, its consumer group, acknowledgements and dead letters;
//! - [`pause`]: pausing and resuming every consumer (`P queue:paused`);
//! - [`epoch`]: whether Redis still holds the data MySQL recorded (lost on a restart
//!   without persistence);
//! - [`order_stats`]: live per-minute and per-second counts of orders that ended;
//! - [`read_model`]: the exactly-once update of KPIs and leaderboard.

pub mod conn;
pub mod epoch;
pub mod keys;
pub mod order_stats;
pub mod partition;
pub mod pause;
pub mod queue;
pub mod read_model;
