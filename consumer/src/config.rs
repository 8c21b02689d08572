//! The consumer's configuration: flags with env fallbacks (`CONSUMER_*`), validated once.

use std::net::SocketAddr;
use std::time::Duration;

use oms_shared::config::ConnectionConfig;
use oms_shared::order::payment::PaymentSimulator;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "consumer",
    version,
    about = "oms worker: runs the order workflow for the `workers` consumer group"
)]
pub struct ConsumerConfig {
    #[command(flatten)]
    pub conn: ConnectionConfig,

    /// Consumer name in the group; default `<host>-<pid>`, unique per process.
    #[arg(long, env = "CONSUMER_NAME")]
    pub name: Option<String>,

    /// Batches processed at once (each is one MySQL transaction pair). Two per consumer
    /// keep the database busy; more add lock waits on shared customers and products
    /// (docs/performance.md).
    #[arg(long, env = "CONSUMER_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,

    /// Rows per batch (one read from the stream, two transactions in MySQL). The cost of
    /// a statement is spread over more orders the larger the batch (docs/performance.md).
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,

    /// Entries pending longer than this are claimed from any consumer.
    #[arg(long, env = "CONSUMER_CLAIM_IDLE_SECS", default_value_t = 300)]
    pub claim_idle_secs: u64,

    /// Deliveries before an entry's failing rows go to the dead-letter stream.
    #[arg(long, env = "CONSUMER_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u64,

    /// Where /metrics, /healthz and /readyz are served (loopback by default).
    #[arg(long, env = "CONSUMER_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// Serve on this port of --metrics-addr's address instead of its own port (the
    /// systemd and supervisor templates set it per process; the address comes from the
    /// environment file's CONSUMER_METRICS_ADDR).
    #[arg(long, env = "CONSUMER_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Probability that a payment is approved.
    #[arg(long, env = "CONSUMER_PAYMENT_SUCCESS_RATE", default_value_t = 0.8)]
    pub payment_success_rate: f64,

    /// Seed of the payment simulator; the decision is a function of seed and identity.
    #[arg(long, env = "CONSUMER_PAYMENT_SEED", default_value_t = 0)]
    pub payment_seed: u64,

    /// Longest time shutdown waits for batches in progress before exiting anyway.
    #[arg(long, env = "CONSUMER_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Replicas that must hold a batch's read-model increment (`WAIT`) before its outbox
    /// row leaves MySQL; default 1 on a Redis Cluster, 0 on one Redis.
    #[arg(long, env = "CONSUMER_MIN_REPLICAS")]
    pub min_replicas: Option<u32>,

    /// `text` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl ConsumerConfig {
    /// A configuration with every default, for tests and embedding.
    pub fn with_connection(conn: ConnectionConfig) -> Self {
        use clap::Parser;
        let mut config = ConsumerConfig::parse_from(["consumer"]);
        config.conn = conn;
        config
    }

    /// `WAIT` for this many replicas after each read-model update (see `--min-replicas`).
    pub fn replica_wait(&self) -> oms_shared::redis::conn::ReplicaWait {
        let default = if self.conn.is_cluster() { 1 } else { 0 };
        oms_shared::redis::conn::ReplicaWait::new(self.min_replicas.unwrap_or(default))
    }

    /// Checks every setting; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        self.conn.validate().map_err(|e| e.to_string())?;
        if self.concurrency == 0 || self.concurrency > 256 {
            return Err(format!(
                "--concurrency {} must be within 1 and 256",
                self.concurrency
            ));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(format!(
                "--batch-size {} must be within 1 and 10000",
                self.batch_size
            ));
        }
        if self.max_attempts == 0 {
            return Err("--max-attempts must be at least 1".into());
        }
        if self.claim_idle_secs == 0 {
            return Err("--claim-idle-secs must be at least 1".into());
        }
        if let Some(name) = &self.name {
            if name.is_empty()
                || name.len() > 200
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "--name {name:?} must be 1 to 200 characters without spaces"
                ));
            }
        }
        self.payment().map(|_| ())
    }

    pub fn payment(&self) -> Result<PaymentSimulator, String> {
        PaymentSimulator::new(self.payment_success_rate, self.payment_seed)
            .map_err(|e| format!("--payment-success-rate: {e}"))
    }

    /// The configured name, else `<host>-<pid>`.
    pub fn consumer_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "consumer".into());
            format!("{host}-{}", std::process::id())
        })
    }

    pub fn claim_idle(&self) -> Duration {
        Duration::from_secs(self.claim_idle_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_follow_the_spec() {
        let c = ConsumerConfig::parse_from(["consumer"]);
        assert_eq!(c.claim_idle_secs, 300);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(c.payment_success_rate, 0.8);
        assert!(c.validate().is_ok());
        assert!(c
            .consumer_name()
            .ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn bad_settings_name_the_flag() {
        let c = ConsumerConfig::parse_from(["consumer", "--concurrency", "0"]);
        assert!(c.validate().unwrap_err().contains("--concurrency"));
        let c = ConsumerConfig::parse_from(["consumer", "--payment-success-rate", "1.2"]);
        assert!(c.validate().unwrap_err().contains("--payment-success-rate"));
        let c = ConsumerConfig::parse_from(["consumer", "--name", "a b"]);
        assert!(c.validate().unwrap_err().contains("--name"));
    }

    #[test]
    fn the_interface_document_names_every_flag_and_its_env() {
        use clap::CommandFactory;
        let doc = include_str!("../../docs/interface.md");
        let cmd = ConsumerConfig::command();
        let mut seen = 0;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            seen += 1;
            assert!(
                doc.contains(&format!("`--{long}`")),
                "docs/interface.md does not document consumer --{long}"
            );
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    doc.contains(&format!("`{env}`")),
                    "docs/interface.md does not document {env}"
                );
            }
        }
        assert!(seen >= 9, "walked too few flags");
    }
}
