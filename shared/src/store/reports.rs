//! Aggregates for the operator commands: KPIs, leaderboard, reconcile. (Filled in later.)
