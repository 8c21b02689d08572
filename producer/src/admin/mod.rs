//! The admin commands of `producer`: status, failed, kpis, leaderboard, reconcile, queue
//! pause/resume, audit.
//!
//! The figures come from the `oms-reports` crate (typed, serializable values, the same the
//! HTTP API returns; each module here re-exports its report module so that
//! `admin::status::StatusSource` and the like keep one path). This module only parses the
//! arguments and prints: an aligned table or, with `--json`, the JSON documented on the
//! report module. An unreachable server is one error line naming its host.

pub mod audit;
pub mod failed;
pub mod kpis;
pub mod leaderboard;
pub mod queue;
pub mod reconcile;
pub mod status;
