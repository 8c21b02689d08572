//! The operator's side of oms: CSV import into the orders stream, the catalog, the data
//! generator and the admin commands. `main.rs` only calls [`cli::main`]; tests call the
//! command functions directly with the same [`cli::Cli`] configuration.

pub mod admin;
pub mod archive;
mod audit_trail;
pub mod catalog;
pub mod cli;
mod generate;
pub mod import;
pub mod outage;
pub mod partitions;
pub mod recover;
mod report;
pub mod serve;
