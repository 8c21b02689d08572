//! Consumer processes for the fault tests: spawn the built `consumer` binary with a
//! [`TestEnv`]'s variables (optionally inside a network namespace), log its stderr to a
//! file the test can read while it runs, SIGKILL or SIGTERM it. Killed on drop. Also
//! `producer import` in the background ([`spawn_import`], [`wait_import`]), and `producer`
//! processes whose stderr a test reads line by line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::{binary, wait_for, TestEnv};

/// Where consumer logs go: one temp dir per test, removed with it — unless the test is
/// failing (panicking), then kept and its path printed, for the post-mortem.
pub struct LogDir {
    dir: Option<tempfile::TempDir>,
}

impl LogDir {
    pub fn new() -> LogDir {
        LogDir {
            dir: Some(
                tempfile::Builder::new()
                    .prefix("oms-consumer-logs-")
                    .tempdir()
                    .expect("log dir"),
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("log dir").path()
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let dir = dir.keep();
                eprintln!("consumer logs kept in {}", dir.display());
                print_log_tails(&dir, 30);
            }
        }
    }
}

/// The last `n` lines of every log in `dir`, on stderr: CI keeps the test output, not the
/// machine's temp files.
fn print_log_tails(dir: &Path, n: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- last lines of {}:", entry.path().display());
        for line in &lines[lines.len().saturating_sub(n)..] {
            eprintln!("{line}");
        }
    }
}

impl Default for LogDir {
    fn default() -> Self {
        LogDir::new()
    }
}

/// How to start one consumer process.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub name: String,
    /// Extra flags (`--claim-idle-secs 2`, ...).
    pub args: Vec<String>,
    /// Environment (DATABASE_URL, REDIS_URL, OMS_PREFIX, ...).
    pub env: Vec<(String, String)>,
    /// Run inside this network namespace (`ip netns exec NS consumer ...`).
    pub netns: Option<String>,
}

impl ConsumerSpec {
    /// A consumer of `env`, named `name`, with `args`.
    pub fn new(env: &TestEnv, name: &str, args: &[&str]) -> ConsumerSpec {
        ConsumerSpec {
            name: name.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .env_vars()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            netns: None,
        }
    }

    /// Replaces (or adds) one environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> ConsumerSpec {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn in_netns(mut self, netns: &str) -> ConsumerSpec {
        self.netns = Some(netns.to_string());
        self
    }
}

/// A running consumer process; SIGKILLed on drop if still running.
pub struct ConsumerProc {
    pub name: String,
    pub log_path: PathBuf,
    child: Child,
}

impl ConsumerProc {
    /// Spawns the consumer; stderr goes to `logs/<name>.log` (appended across restarts).
    pub fn spawn(spec: &ConsumerSpec, logs: &LogDir) -> ConsumerProc {
        let log_path = logs.path().join(format!("{}.log", spec.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("consumer log file");
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("consumer"));
                c
            }
            None => Command::new(binary("consumer")),
        };
        cmd.args([
            "--name",
            &spec.name,
            "--metrics-addr",
            "127.0.0.1:0",
            "--payment-seed",
            "7",
        ])
        .args(&spec.args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .env("RUST_LOG", "info")
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn consumer");
        ConsumerProc {
            name: spec.name.clone(),
            log_path,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; waits up to `deadline` for the exit status (SIGKILL after that: `None`).
    pub fn terminate(&mut self, deadline: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        crate::servers::signal(self.child.id(), "-TERM");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process state letter of `/proc/<pid>/stat` (`R`, `S`, `T` stopped, `Z` exited
    /// but not reaped), `None` once it is gone.
    fn state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // `pid (comm) S ...`: the state follows the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().next()?.chars().next()
    }

    /// True while the process is stopped (SIGSTOP: state `T` in `/proc/<pid>/stat`).
    pub fn is_stopped(&self) -> bool {
        self.state() == Some('T')
    }

    /// True once the process has exited (reaped or not), without reaping it.
    pub fn has_exited(&self) -> bool {
        matches!(self.state(), None | Some('Z') | Some('X'))
    }

    /// The last `n` lines of [`Self::log`].
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGSTOP: the process freezes where it is (as in a VM pause).
    pub fn pause(&self) {
        crate::servers::signal(self.child.id(), "-STOP");
    }

    /// SIGCONT: a stopped process resumes where it was.
    pub fn resume(&self) {
        crate::servers::signal(self.child.id(), "-CONT");
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process (and earlier processes with the same name) wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The address `/metrics` and `/readyz` really listen on (`--metrics-addr
    /// 127.0.0.1:0`), from the consumer's `serving /metrics` log line.
    pub async fn metrics_addr(&self, deadline: Duration) -> std::net::SocketAddr {
        crate::wait_for("the consumer's metrics address", deadline, || {
            let log = self.log();
            // Exited before it served: fail now, with what it said, not at the deadline.
            assert!(
                !self.has_exited() || log.contains("serving /metrics"),
                "consumer {} exited before serving /metrics; its log ends:\n{}",
                self.name,
                self.log_tail(40)
            );
            async move {
                log.lines()
                    .find(|l| l.contains("serving /metrics"))
                    .and_then(|l| l.split("addr=").nth(1))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|a| a.parse().ok())
            }
        })
        .await
    }
}

impl Drop for ConsumerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// `producer import FILE --chunk-size 100 EXTRA...` against `env`, running in the
/// background; its stderr goes to `logs/import.log`.
pub fn spawn_import(env: &TestEnv, file: &Path, extra: &[&str], logs: &LogDir) -> Child {
    let log = std::fs::File::create(logs.path().join("import.log")).expect("import log");
    Command::new(binary("producer"))
        .arg("import")
        .arg(file)
        .args(["--chunk-size", "100"])
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn producer import")
}

/// What a [`spawn_import`]ed import wrote to stderr so far.
pub fn import_log(logs: &LogDir) -> String {
    std::fs::read_to_string(logs.path().join("import.log")).unwrap_or_default()
}

/// Waits for a [`spawn_import`]ed import to exit; asserts it succeeded.
pub async fn wait_import(mut import: Child, logs: &LogDir, deadline: Duration) {
    let status = wait_for("producer import to exit", deadline, || {
        let s = import.try_wait().expect("import status");
        async move { s }
    })
    .await;
    assert!(
        status.success(),
        "producer import failed ({status}):\n{}",
        import_log(logs)
    );
}

/// Forwards `child`'s stderr lines to a channel, from a thread that ends at EOF (once the
/// process is gone, the channel holds every line).
pub fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Spawns `producer ARGS` against `env` (`RUST_LOG=info`, stdout piped), its stderr lines
/// forwarded to the returned channel.
pub fn spawn_producer(env: &TestEnv, args: &[&str]) -> (Child, Receiver<String>) {
    spawn_producer_unset(env, args, &[])
}

/// [`spawn_producer`] with the variables `unset` removed from its environment.
pub fn spawn_producer_unset(
    env: &TestEnv,
    args: &[&str],
    unset: &[&str],
) -> (Child, Receiver<String>) {
    let mut command = Command::new(binary("producer"));
    command.envs(env.env_vars());
    for var in unset {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let rx = stderr_lines(&mut child);
    (child, rx)
}
