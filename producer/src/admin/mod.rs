//! The admin commands of `producer`: status, failed, kpis, leaderboard, reconcile.

pub mod failed;
pub mod kpis;
pub mod leaderboard;
pub mod reconcile;
pub mod status;
