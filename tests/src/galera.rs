//! A private 3-node MariaDB Galera cluster for the high-availability tests and the
//! benchmark: every node a `mariadbd` with `wsrep_on=ON` and the Galera provider
//! ([`GALERA_PROVIDER`], package `galera-4`), its own temp datadir and ports (client,
//! group communication, IST, SST), loopback only, `binlog_format=ROW`,
//! `innodb_autoinc_lock_mode=2`. The first node bootstraps the cluster
//! (`--wsrep-new-cluster`) at its first start; the others join it and receive a state
//! snapshot (SST, `rsync`), and so does a node restarted after a SIGKILL (or an
//! incremental transfer, IST, when the donor's cache still holds what it missed).
//!
//! Nodes are [`CrashableServer`]s like `servers::MariaDbServer`: killed (SIGKILL) and
//! their temp dirs removed on drop, also when the test panics. Run as root, the nodes run
//! as `nobody` (`--user`): the rsync daemon of an SST drops root privileges to `nobody`
//! and must be able to write the joiner's datadir.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::servers::{free_local_port, running_as_root, CrashableServer, ServerProcess};
use crate::TestEnv;

/// Where Debian's `galera-4` installs the wsrep provider (`dpkg -L galera-4`).
pub const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// What a node logs once it is synced with the cluster and serves queries.
const SYNCED: &str = "Synchronized with group, ready for connections";

/// One node of a [`GaleraCluster`].
pub struct GaleraNode {
    process: ServerProcess,
    /// The node's client port (127.0.0.1).
    pub port: u16,
    /// Group communication (`gmcast.listen_addr`), IST and SST ports.
    group_port: u16,
    ist_port: u16,
    sst_port: u16,
    /// `gcomm://` address of every node.
    cluster_address: String,
    cluster_name: String,
    name: String,
    /// True for the node that bootstraps the cluster at its first start.
    bootstraps: bool,
}

/// A 3-node (or n-node) Galera cluster on loopback.
pub struct GaleraCluster {
    pub nodes: Vec<GaleraNode>,
}

impl GaleraCluster {
    /// Starts `n` nodes (the first bootstraps, the others join one by one) and waits
    /// until each is synced.
    pub async fn start(n: usize) -> GaleraCluster {
        assert!(
            Path::new(GALERA_PROVIDER).exists(),
            "{GALERA_PROVIDER} is missing: install galera-4 (ops/services.sh galera)"
        );
        let group_ports: Vec<u16> = (0..n).map(|_| free_local_port()).collect();
        let cluster_address = format!(
            "gcomm://{}",
            group_ports
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let cluster_name = format!("oms-test-{}", group_ports[0]);
        let mut nodes: Vec<GaleraNode> = group_ports
            .iter()
            .enumerate()
            .map(|(i, &group_port)| {
                GaleraNode::create(i, group_port, &cluster_address, &cluster_name)
            })
            .collect();
        for node in &mut nodes {
            node.boot().await;
        }
        GaleraCluster { nodes }
    }

    /// `mysql://root@127.0.0.1:P1,127.0.0.1:P2,...` with node `first` first (the node a
    /// process prefers), the others after it in order; no database (append `/name`).
    pub fn server_url_from(&self, first: usize) -> String {
        let n = self.nodes.len();
        let hosts: Vec<String> = (0..n)
            .map(|k| format!("127.0.0.1:{}", self.nodes[(first + k) % n].port))
            .collect();
        format!("mysql://root@{}", hosts.join(","))
    }

    /// A fresh [`TestEnv`] on this cluster (created and migrated through node 0), returned
    /// once every node has applied its schema: a process started at once on another node
    /// finds the database (Galera applies on the other nodes after node 0 commits).
    pub async fn test_env(&self) -> TestEnv {
        let env = TestEnv::on_servers(&self.server_url(), &crate::redis_server()).await;
        for node in &self.nodes {
            node.wait_caught_up(&env.database).await;
        }
        env
    }

    /// [`GaleraCluster::server_url_from`] node 0.
    pub fn server_url(&self) -> String {
        self.server_url_from(0)
    }

    /// `database_url` (a URL of this cluster, any node order) with node `first` first.
    pub fn database_url_from(&self, first: usize, database: &str) -> String {
        format!("{}/{database}", self.server_url_from(first))
    }
}

impl Drop for GaleraCluster {
    /// A failing test shows the end of every node's log (the temp dirs go with the nodes).
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let log = node.log();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- last lines of Galera {} ({}):", node.name, node.host());
                for line in &lines[lines.len().saturating_sub(15)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl GaleraNode {
    fn create(index: usize, group_port: u16, cluster_address: &str, cluster_name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("oms-galera-")
            .tempdir()
            .expect("galera temp dir");
        let datadir = dir.path().join("data");
        if index == 0 {
            install_datadir(&datadir);
        } else {
            // A joiner's datadir is replaced by the state snapshot it receives.
            std::fs::create_dir(&datadir).expect("joiner datadir");
        }
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "nobody:"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown -R nobody: {}",
                dir.path().display()
            );
        }
        GaleraNode {
            process: ServerProcess {
                dir,
                program: "mariadbd (Galera)",
                ready_marker: SYNCED,
                log_name: |n| format!("mariadb-{n}.err"),
                child: None,
                starts: 0,
            },
            port: free_local_port(),
            group_port,
            ist_port: free_local_port(),
            sst_port: free_local_port(),
            cluster_address: cluster_address.to_string(),
            cluster_name: cluster_name.to_string(),
            name: format!("node{index}"),
            bootstraps: index == 0,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Waits until this node holds `database`'s migrations, reading with causal reads
    /// (`wsrep_sync_wait`): the read waits until the node has applied what the cluster
    /// committed before it.
    pub async fn wait_caught_up(&self, database: &str) {
        let url = format!("mysql://root@{}/", self.host());
        let applied = format!("SELECT COUNT(*) FROM `{database}`._sqlx_migrations");
        crate::wait_for(
            &format!("{} to hold {database}", self.host()),
            Duration::from_secs(120),
            || async {
                let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)
                    .await
                    .ok()?;
                sqlx::query("SET SESSION wsrep_sync_wait = 1")
                    .execute(&mut c)
                    .await
                    .ok()?;
                let (n,): (i64,) = sqlx::query_as(&applied).fetch_one(&mut c).await.ok()?;
                (n > 0).then_some(())
            },
        )
        .await;
    }

    /// The error logs of every start so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `127.0.0.1:PORT`, as error messages and log lines name the node.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's command-line arguments in `dir`, but for its log file and the bootstrap
    /// flag (which differ per start).
    fn args(&self, dir: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", dir.join("data").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", dir.join("mysqld.sock").display()),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
        ];
        args.extend(
            [
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--lock-wait-timeout=20",
                "--max-connections=1000",
                "--innodb-buffer-pool-size=96M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--binlog-format=ROW",
                "--innodb-autoinc-lock-mode=2",
                "--wsrep-on=ON",
                "--wsrep-sst-method=rsync",
                "--wsrep-slave-threads=2",
            ]
            .map(String::from),
        );
        args.extend([
            format!("--wsrep-provider={GALERA_PROVIDER}"),
            format!("--wsrep-cluster-address={}", self.cluster_address),
            format!("--wsrep-cluster-name={}", self.cluster_name),
            format!("--wsrep-node-name={}", self.name),
            format!("--wsrep-node-address=127.0.0.1:{}", self.group_port),
            format!("--wsrep-node-incoming-address=127.0.0.1:{}", self.port),
            format!("--wsrep-sst-receive-address=127.0.0.1:{}", self.sst_port),
            format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{};\
                 ist.recv_addr=127.0.0.1:{};gcache.size=256M",
                self.group_port, self.ist_port
            ),
        ]);
        if running_as_root() {
            args.push("--user=nobody".into());
        }
        args
    }
}

/// `mariadb-install-db` into `datadir` (the bootstrapping node's).
fn install_datadir(datadir: &Path) {
    let mut install = Command::new("mariadb-install-db");
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if running_as_root() {
        install.arg("--user=nobody");
    }
    let out = install
        .output()
        .expect("run mariadb-install-db (is mariadb-server installed?)");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl CrashableServer for GaleraNode {
    /// Crash: SIGKILL. The node drops out of the cluster's view after the group
    /// communication's suspect timeout (a few seconds); the others go on.
    fn kill(&mut self) {
        self.process.kill();
    }

    /// Clean shutdown: SIGTERM, bounded wait (60 s, then SIGKILL).
    fn stop(&mut self) {
        self.process.stop(Duration::from_secs(60));
    }

    /// Starts (or restarts) the node on the same ports and datadir; waits until it is
    /// synced with the cluster (after its IST or SST).
    async fn boot(&mut self) {
        let args = self.args(self.process.dir.path());
        let bootstrap = self.bootstraps && self.process.starts == 0;
        self.process
            .boot(self.port, move |_dir, log| {
                let mut cmd = Command::new("mariadbd");
                cmd.args(&args)
                    .arg(format!("--log-error={}", log.display()));
                if bootstrap {
                    cmd.arg("--wsrep-new-cluster");
                }
                cmd
            })
            .await;
    }
}
