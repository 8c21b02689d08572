//! A private Redis Cluster for the cluster tests: 3 primaries and 3 replicas, each a
//! `redis-server --cluster-enabled yes` on its own free port (and free bus port) in one
//! temp dir, joined by `redis-cli --cluster create … --cluster-replicas 1`, with a short
//! `cluster-node-timeout` so a killed primary's replica takes over within a few seconds.
//!
//! Nodes keep no data on disk (no RDB, no AOF): a restarted node comes back empty, learns
//! from its `nodes.conf` and the others' gossip that its replica was promoted, and rejoins
//! as that replica's replica (a full sync). Every node is SIGKILLed and the dir removed on
//! drop, also when the test panics.
//!
//! [`TestEnv::on_cluster`] builds a [`TestEnv`] on the cluster with `P` partitions
//! recorded (what `producer migrate --partitions P` does).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::partition::PartitionCount;
use redis::Value;

use crate::servers::free_local_port;
use crate::{wait_for, TestEnv};

/// Milliseconds without an answer after which a node is failed and its replica promoted.
pub const NODE_TIMEOUT_MS: u64 = 1_000;

/// How long the cluster may take to form, fail over or heal.
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(120);

/// One node's process and ports.
pub struct ClusterNode {
    pub port: u16,
    bus_port: u16,
    child: Option<Child>,
    starts: u32,
}

/// Three primaries and three replicas on this machine.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    pub nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every slot is served and
    /// every primary has its replica in sync.
    pub async fn start() -> RedisCluster {
        let dir = tempfile::Builder::new()
            .prefix("oms-cluster-")
            .tempdir()
            .expect("cluster temp dir");
        let nodes = (0..6)
            .map(|_| ClusterNode {
                port: free_local_port(),
                bus_port: free_local_port(),
                child: None,
                starts: 0,
            })
            .collect();
        let mut cluster = RedisCluster { dir, nodes };
        for i in 0..6 {
            cluster.boot(i).await;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("run redis-cli --cluster create")
        })
        .await
        .expect("redis-cli task");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy().await;
        cluster
    }

    /// `redis://127.0.0.1:P1,redis://127.0.0.1:P2,…`: every node (a client needs only one
    /// that answers to find the rest).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, i: usize, start: u32) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("node-{}-{start}.log", self.nodes[i].port))
    }

    /// Starts (or restarts) node `i` on its ports and config file; waits until it accepts
    /// connections.
    pub async fn boot(&mut self, i: usize) {
        let dir = self.dir.path().to_path_buf();
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} already running");
        node.starts += 1;
        let (port, bus, start) = (node.port, node.bus_port, node.starts);
        let log = self.log_path(i, start);
        let child = node_command(&dir, port, bus, &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.nodes[i].child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return;
            }
            assert!(
                started.elapsed() < CLUSTER_DEADLINE,
                "cluster node {port} not ready:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs node `i` and waits until the process is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The log of node `i`'s latest start.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i, self.nodes[i].starts)).unwrap_or_default()
    }

    /// Runs `cmd` on node `i` alone (a plain connection, no redirection).
    pub async fn query(&self, i: usize, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.nodes[i].port))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        cmd.query_async(&mut conn).await
    }

    async fn info(&self, i: usize, section: &str) -> Option<String> {
        match self.query(i, redis::cmd("INFO").arg(section)).await.ok()? {
            Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Value::VerbatimString { text, .. } => Some(text),
            _ => None,
        }
    }

    async fn cluster_info(&self, i: usize) -> Option<String> {
        match self
            .query(i, &redis::cmd("CLUSTER").arg("INFO").clone())
            .await
            .ok()?
        {
            Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            Value::VerbatimString { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The node serving `slot` as primary, as node `asked` sees it (`CLUSTER SLOTS`).
    async fn primary_seen_by(&self, asked: usize, slot: u16) -> Option<usize> {
        let Value::Array(ranges) = self
            .query(asked, &redis::cmd("CLUSTER").arg("SLOTS").clone())
            .await
            .ok()?
        else {
            return None;
        };
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(primary))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&i64::from(slot)) {
                let Some(Value::Int(port)) = primary.get(1) else {
                    return None;
                };
                return self.nodes.iter().position(|n| i64::from(n.port) == *port);
            }
        }
        None
    }

    /// The node serving `slot` as primary (asked of the running nodes until one answers).
    pub async fn primary_of_slot(&self, slot: u16) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.is_running(i) {
                if let Some(p) = self.primary_seen_by(i, slot).await {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The node holding the read models of `keys` (their one slot).
    pub async fn read_model_primary(&self, keys: &StreamKeys) -> usize {
        self.primary_of_slot(keys.read_model_slot())
            .await
            .expect("a primary for the read models' slot")
    }

    /// Waits until a running node other than `old` serves `slot` as primary, as every
    /// running node sees it, and the cluster is `ok`; returns that node.
    pub async fn wait_promoted(&self, slot: u16, old: usize) -> usize {
        wait_for(
            &format!("a replica of node {old} promoted for slot {slot}"),
            CLUSTER_DEADLINE,
            || async {
                let mut agreed = None;
                for i in (0..self.nodes.len()).filter(|&i| self.is_running(i)) {
                    let seen = self.primary_seen_by(i, slot).await?;
                    if seen == old || agreed.is_some_and(|a| a != seen) {
                        return None;
                    }
                    agreed = Some(seen);
                    if !self.cluster_info(i).await?.contains("cluster_state:ok") {
                        return None;
                    }
                }
                agreed
            },
        )
        .await
    }

    /// Waits until every running node says `cluster_state:ok`, and every primary that
    /// serves slots has a replica whose link is up (the failover tests then kill one).
    pub async fn wait_healthy(&self) {
        wait_for("a healthy cluster", CLUSTER_DEADLINE, || async {
            let mut primaries_with_slots = 0;
            for i in (0..self.nodes.len()).filter(|&i| self.is_running(i)) {
                if !self.cluster_info(i).await?.contains("cluster_state:ok") {
                    return None;
                }
                let replication = self.info(i, "replication").await?;
                if replication.contains("role:master") {
                    if self.owns_slots(i).await? {
                        primaries_with_slots += 1;
                        if !replication.contains("state=online") {
                            return None;
                        }
                    }
                } else if !replication.contains("master_link_status:up") {
                    return None;
                }
            }
            (primaries_with_slots == 3).then_some(())
        })
        .await
    }

    /// Whether node `i` serves any slot as primary.
    async fn owns_slots(&self, i: usize) -> Option<bool> {
        let Value::Array(ranges) = self
            .query(i, &redis::cmd("CLUSTER").arg("SLOTS").clone())
            .await
            .ok()?
        else {
            return None;
        };
        let port = i64::from(self.nodes[i].port);
        Some(ranges.iter().any(|r| match r {
            Value::Array(parts) => matches!(
                parts.get(2),
                Some(Value::Array(p)) if matches!(p.get(1), Some(Value::Int(x)) if *x == port)
            ),
            _ => false,
        }))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

fn node_command(dir: &Path, port: u16, bus_port: u16, log: &Path) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--protected-mode", "no"])
        .args(["--daemonize", "no"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-port", &bus_port.to_string()])
        .arg("--cluster-config-file")
        .arg(dir.join(format!("nodes-{port}.conf")))
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // A replica takes over however long ago it last heard from its primary.
        .args(["--cluster-replica-validity-factor", "0"])
        // Slots of the other primaries stay served while one fails over.
        .args(["--cluster-require-full-coverage", "no"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", &format!("dump-{port}.rdb")])
        .arg("--logfile")
        .arg(log);
    cmd
}

impl TestEnv {
    /// A [`TestEnv`] on `cluster` with `partitions` partitions recorded, its keys in the
    /// cluster layout (hash tags).
    pub async fn on_cluster(cluster: &RedisCluster, partitions: u16) -> TestEnv {
        let mut env = TestEnv::on_servers(&crate::mysql_server(), &cluster.url()).await;
        let count = PartitionCount::new(partitions).expect("a valid partition count");
        oms_shared::store::settings::record_stream_partitions(&env.db, count)
            .await
            .expect("record the partition count");
        env.keys = StreamKeys::for_layout(&env.config.prefix, count, true);
        let mut conn = env.redis_conn().await;
        oms_shared::redis::queue::ensure_group(&mut *conn, &env.keys)
            .await
            .expect("create the partitions' groups");
        drop(conn);
        env
    }
}
