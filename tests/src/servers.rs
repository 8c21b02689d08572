//! Private Redis and MariaDB instances for the fault and security tests.
//!
//! A test that stops, restarts or reconfigures a server must never touch the shared
//! instances on 127.0.0.1:6379 and :3306, so it starts its own here: [`RedisServer`] (a
//! `redis-server` in a temp dir, without persistence or with AOF ([`RedisPersistence`]),
//! optionally with a password or TLS) and
//! [`MariaDbServer`] (`mariadb-install-db` into a temp datadir, then `mariadbd` on its own
//! port and socket with `--skip-grant-tables`). Ports are chosen free at creation and kept
//! across restarts, so clients reconnect to the same address.
//!
//! Both are killed (SIGKILL) and their temp dirs removed on drop, also when the test
//! panics. [`TestEnv::on_servers`](crate::TestEnv::on_servers) builds a
//! [`TestEnv`](crate::TestEnv) on such servers.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// How long a server may take to say it is ready (MariaDB crash recovery included).
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A TCP port that nothing listens on at `addr` right now, for a server a test starts.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), never from it: a port
/// the kernel hands to outgoing connections can be taken by one of the many client sockets
/// of a busy suite between this check and the server's bind, or while a server is down
/// between a kill and its restart on the same port (a cluster node once failed with
/// "Address already in use" so). Never handed out twice by this process either.
pub fn free_port(addr: IpAddr) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let high = ephemeral_range_start().clamp(PORTS_LOW + 1_000, 32_768);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let port = rand::rng().random_range(PORTS_LOW..high);
        if !given.contains(&port) && TcpListener::bind((addr, port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORTS_LOW}..{high} on {addr}");
}

/// The lowest port servers started by tests listen on.
const PORTS_LOW: u16 = 15_000;

/// The first port of the kernel's ephemeral range (Linux's default when unreadable).
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A free port on 127.0.0.1.
pub fn free_local_port() -> u16 {
    free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// True when this process runs as root (then `mariadbd` needs `--user=root`).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Sends `signal` (`-KILL`, `-TERM`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `deadline` for `child` to exit; kills it if it does not.
fn wait_exit(child: &mut Child, deadline: Duration) -> bool {
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `log` until it contains `marker`; fails if the process exits or time runs out.
async fn wait_ready(child: &mut Child, log: &Path, marker: &str, what: &str) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(marker) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                tail(&text)
            );
        }
        assert!(
            start.elapsed() < READY_DEADLINE,
            "{what} not ready after {READY_DEADLINE:?}:\n{}",
            tail(&text)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A server whose process a test crashes, stops and restarts: what
/// [`RedisServer`] and [`MariaDbServer`] both implement.
pub trait CrashableServer {
    /// Crash: SIGKILL, and wait for the process to be gone.
    fn kill(&mut self);
    /// Clean stop: SIGTERM, bounded wait (then SIGKILL).
    fn stop(&mut self);
    /// Starts (or restarts) the server on the same port and dir; waits until ready.
    fn boot(&mut self) -> impl Future<Output = ()>;
}

/// The process of a private server: its temp dir, its child, and one log file per start
/// (`log_name(n)` in the dir for the `n`th start). SIGKILLed on drop.
pub(crate) struct ServerProcess {
    pub(crate) dir: tempfile::TempDir,
    /// The program, as named in messages (`redis-server`, `mariadbd`).
    pub(crate) program: &'static str,
    /// What the program writes to its log once it accepts connections.
    pub(crate) ready_marker: &'static str,
    pub(crate) log_name: fn(u32) -> String,
    pub(crate) child: Option<Child>,
    pub(crate) starts: u32,
}

impl ServerProcess {
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Starts the next run: `command(dir, log)` is the command line, writing its log to
    /// `log`; spawns it and waits until the log says it is ready on `port`.
    pub(crate) async fn boot(&mut self, port: u16, command: impl FnOnce(&Path, &Path) -> Command) {
        assert!(!self.is_running(), "{} already running", self.program);
        self.starts += 1;
        let log = self.dir.path().join((self.log_name)(self.starts));
        let mut cmd = command(self.dir.path(), &log);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} (is it installed?): {e}", self.program));
        let what = format!("{} on port {port}", self.program);
        wait_ready(&mut child, &log, self.ready_marker, &what).await;
        self.child = Some(child);
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `deadline` (then SIGKILL).
    pub(crate) fn stop(&mut self, deadline: Duration) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            wait_exit(&mut child, deadline);
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            signal(child.id(), sig);
        }
    }

    /// The logs of every start so far.
    pub(crate) fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join((self.log_name)(n)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// TLS files for a Redis server (PEM paths).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A private `redis-server`: its own port and temp dir, killed on drop.
pub struct RedisServer {
    process: ServerProcess,
    /// The plain-TCP port (what [`RedisServer::url`] names).
    pub port: u16,
    /// The TLS port, when started with [`RedisOptions::tls`].
    pub tls_port: Option<u16>,
    binds: Vec<String>,
    args: Vec<String>,
}

/// How a [`RedisServer`] persists its data (see README "Durability").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisPersistence {
    /// No RDB, no AOF: a restart starts empty (what the tests of data loss need).
    #[default]
    None,
    /// AOF with `appendfsync everysec` (what oms ships): a process crash loses nothing,
    /// a power loss or OS crash up to about a second of writes.
    AofEverysec,
    /// AOF with `appendfsync always`: every acknowledged write survives any crash.
    AofAlways,
}

impl RedisPersistence {
    /// The `redis-server` arguments that select it.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            RedisPersistence::None => &["--appendonly", "no"],
            RedisPersistence::AofEverysec => &["--appendonly", "yes", "--appendfsync", "everysec"],
            RedisPersistence::AofAlways => &["--appendonly", "yes", "--appendfsync", "always"],
        }
    }
}

/// Options of a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// RDB snapshots are always off; this picks the AOF (default: none).
    pub persistence: RedisPersistence,
    /// `requirepass` for the default user.
    pub password: Option<String>,
    /// Also serve TLS on a second port (`--tls-port`), clients not authenticated by
    /// certificate; the plain port stays for the test's own set-up and checks.
    pub tls: Option<TlsFiles>,
    /// Addresses to bind besides 127.0.0.1 (e.g. the host side of a veth).
    pub extra_binds: Vec<String>,
    /// A fixed port (default: a free one).
    pub port: Option<u16>,
}

impl RedisServer {
    /// Starts a server with `options` and waits until it accepts connections.
    pub async fn start(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer::create(options);
        server.boot().await;
        server
    }

    /// Prepares a server without starting it (see [`RedisServer::boot`]).
    pub fn create(options: RedisOptions) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("oms-redis-")
            .tempdir()
            .expect("redis temp dir");
        let port = options.port.unwrap_or_else(free_local_port);
        let tls_port = options.tls.as_ref().map(|_| free_local_port());
        let mut binds = vec!["127.0.0.1".to_string()];
        binds.extend(options.extra_binds.iter().cloned());
        let mut args: Vec<String> = vec![
            "--save".into(),
            "".into(),
            "--protected-mode".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(options.persistence.args().iter().map(|s| s.to_string()));
        if let Some(pw) = &options.password {
            args.extend(["--requirepass".to_string(), pw.clone()]);
        }
        if let (Some(tls), Some(tls_port)) = (&options.tls, tls_port) {
            args.extend([
                "--tls-port".to_string(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ]);
        }
        RedisServer {
            process: ServerProcess {
                dir,
                program: "redis-server",
                ready_marker: "Ready to accept connections",
                log_name: |n| format!("redis-{n}.log"),
                child: None,
                starts: 0,
            },
            port,
            tls_port,
            binds,
            args,
        }
    }

    /// The server's temp dir (AOF files, logs).
    pub fn dir(&self) -> &Path {
        self.process.dir.path()
    }

    /// `redis://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The same URL with `user:password` credentials (user may be empty).
    pub fn url_with_auth(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// `rediss://HOST:TLS_PORT` (HOST: an address the server binds, or `localhost`).
    pub fn tls_url(&self, host: &str) -> String {
        let port = self.tls_port.expect("a server started with TLS");
        format!("rediss://{host}:{port}")
    }

    /// The URL with which a client on `addr` (a bound address) reaches this server.
    pub fn url_at(&self, addr: &str) -> String {
        format!("redis://{addr}:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.process.signal("-STOP");
    }

    /// Thaws a [`RedisServer::pause`]d process (SIGCONT).
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }

    /// The logs of every start so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl CrashableServer for RedisServer {
    /// Crash: SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) {
        self.process.kill();
    }

    /// Clean stop: SIGTERM (Redis flushes the AOF and exits), bounded wait (30 s).
    fn stop(&mut self) {
        self.process.stop(Duration::from_secs(30));
    }

    /// Starts (or restarts) the process on the same port and dir; waits until ready.
    async fn boot(&mut self) {
        self.process
            .boot(self.port, |dir, log| {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--port", &self.port.to_string()])
                    .arg("--bind")
                    .args(&self.binds)
                    .args(["--dir", &dir.display().to_string()])
                    .args(["--logfile", &log.display().to_string()])
                    .args(&self.args);
                cmd
            })
            .await;
    }
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed by it, made with
/// `openssl` in `dir` (EC P-256, valid 2 days).
pub fn make_tls_files(dir: &Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=oms test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    run(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    }
}

/// A private MariaDB: its own datadir, port and socket, killed on drop.
pub struct MariaDbServer {
    process: ServerProcess,
    pub port: u16,
    binds: Vec<String>,
    extra: Vec<String>,
}

impl MariaDbServer {
    /// Initialises a datadir, starts the server and waits until it accepts connections.
    pub async fn start() -> MariaDbServer {
        MariaDbServer::start_with(&[], &[]).await
    }

    /// As [`MariaDbServer::start`], also bound to `extra_binds`, with extra server options
    /// (e.g. `--idle-transaction-timeout=5`).
    pub async fn start_with(extra_binds: &[String], options: &[&str]) -> MariaDbServer {
        let mut server = MariaDbServer::create(extra_binds, options);
        server.boot().await;
        server
    }

    /// Initialises the datadir without starting the server (see [`MariaDbServer::boot`]).
    pub fn create(extra_binds: &[String], options: &[&str]) -> MariaDbServer {
        let dir = tempfile::Builder::new()
            .prefix("oms-mariadb-")
            .tempdir()
            .expect("mariadb temp dir");
        let datadir = dir.path().join("data");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if running_as_root() {
            install.arg("--user=root");
        }
        let out = install
            .output()
            .expect("run mariadb-install-db (is mariadb-server installed?)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut binds = vec!["127.0.0.1".to_string()];
        binds.extend(extra_binds.iter().cloned());
        MariaDbServer {
            process: ServerProcess {
                dir,
                program: "mariadbd",
                ready_marker: "ready for connections",
                log_name: |n| format!("mariadb-{n}.err"),
                child: None,
                starts: 0,
            },
            port: free_local_port(),
            binds,
            extra: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `mysql://root@127.0.0.1:PORT` (no database: append `/name`).
    pub fn server_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The server URL as reached from a client on `addr` (a bound address).
    pub fn server_url_at(&self, addr: &str) -> String {
        format!("mysql://root@{addr}:{}", self.port)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, like a
    /// server stuck on its disk or a peer behind a silent network failure.
    pub fn pause(&self) {
        self.process.signal("-STOP");
    }

    /// Thaws a [`MariaDbServer::pause`]d server (SIGCONT).
    pub fn resume(&self) {
        self.process.signal("-CONT");
    }

    /// The error logs of every start so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl CrashableServer for MariaDbServer {
    /// Crash: SIGKILL (InnoDB recovers committed transactions at the next boot).
    fn kill(&mut self) {
        self.process.kill();
    }

    /// Clean shutdown: SIGTERM, bounded wait (60 s, then SIGKILL).
    fn stop(&mut self) {
        self.process.stop(Duration::from_secs(60));
    }

    /// Starts (or restarts) `mariadbd` on the same port and datadir; waits until ready.
    async fn boot(&mut self) {
        self.process
            .boot(self.port, |d, log| {
                let mut cmd = Command::new("mariadbd");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", d.join("data").display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--bind-address={}", self.binds.join(",")))
                    .arg(format!("--socket={}", d.join("mysqld.sock").display()))
                    .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
                    .arg(format!("--log-error={}", log.display()))
                    .args([
                        "--skip-grant-tables",
                        "--skip-name-resolve",
                        "--skip-log-bin",
                        // Metadata-lock waits (the harness' DROP DATABASE behind a session
                        // that a test cut off mid-transaction) end instead of hanging the
                        // clean-up.
                        "--lock-wait-timeout=20",
                        "--max-connections=1000",
                        "--innodb-buffer-pool-size=128M",
                        "--character-set-server=utf8mb4",
                        "--collation-server=utf8mb4_unicode_ci",
                    ])
                    .args(&self.extra);
                if running_as_root() {
                    cmd.arg("--user=root");
                }
                cmd
            })
            .await;
    }
}
