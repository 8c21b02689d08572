//! Hardening (issue 16): passwords never printed whatever their characters, a prefix with
//! Redis pattern characters refused, the `--rejects` file, the metrics port under slow and
//! many clients while orders flow, and SIGINT / SIGKILL during a stdin spool.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oms_tests::invariants::wait_settled;
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::{binary, order_row, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `producer ARGS` with exactly `vars` as its connection settings.
fn producer(vars: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .env("RUST_LOG", "debug")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run producer")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn with_var(env: &TestEnv, key: &'static str, value: &str) -> Vec<(&'static str, String)> {
    let mut vars = env.env_vars();
    vars.retain(|(k, _)| *k != key);
    vars.push((key, value.to_string()));
    vars
}

// ---------------------------------------------------------------------------------------
// Passwords

/// A password with every character that breaks or splits a URL; its pieces are long
/// enough that finding any of them in the output means a leak.
const PIECES: [&str; 6] = [
    "Frag1Pw", "Frag2Qx", "Frag3Zk", "Frag4Vb", "Frag5Ty", "Frag6Mn",
];

fn hostile_password() -> String {
    format!(
        "{}/{}@{}:{}%{}#{}",
        PIECES[0], PIECES[1], PIECES[2], PIECES[3], PIECES[4], PIECES[5]
    )
}

fn percent_encoded(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '/' => "%2F".to_string(),
            '@' => "%40".to_string(),
            ':' => "%3A".to_string(),
            '%' => "%25".to_string(),
            '#' => "%23".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn assert_no_password(what: &str, output: &str) {
    for piece in PIECES {
        assert!(
            !output.contains(piece),
            "{what} printed (part of) the password ({piece}):\n{output}"
        );
    }
    assert!(!output.contains("Frag"), "{what}:\n{output}");
}

#[tokio::test]
async fn passwords_with_url_breaking_characters_are_never_printed() {
    let env = TestEnv::new().await;
    let db = &env.database;
    let raw = hostile_password();
    let encoded = percent_encoded(&raw);
    // (setting, URL): as typed (not a valid URL), encoded and wrong, encoded and unreachable.
    let cases: Vec<(&'static str, String)> = vec![
        (
            "DATABASE_URL",
            format!("mysql://root:{raw}@127.0.0.1:3306/{db}"),
        ),
        (
            "DATABASE_URL",
            format!("mysql://root:{encoded}@127.0.0.1:3306/{db}"),
        ),
        (
            "DATABASE_URL",
            format!("mysql://root:{encoded}@127.0.0.1:1/{db}"),
        ),
        ("DATABASE_URL", format!("root:{raw}@127.0.0.1:3306/{db}")),
        ("REDIS_URL", format!("redis://:{raw}@127.0.0.1:6379")),
        ("REDIS_URL", format!("redis://oms:{encoded}@127.0.0.1:6379")),
        ("REDIS_URL", format!("redis://:{encoded}@127.0.0.1:1")),
    ];
    let catalog = env.file("sku,name,price,stock_quantity\nP1,Pen,1.00,10\n");
    let orders = env.file(&format!(
        "customer_name,customer_email,products\nAnn,ann@example.com,\"{}\"\n",
        r#"[{""sku"":""P1"",""quantity"":1}]"#
    ));
    let catalog = catalog.path().to_str().unwrap().to_string();
    let orders = orders.path().to_str().unwrap().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["migrate"],
        vec!["products", "import", &catalog],
        vec!["products", "list"],
        vec!["import", &orders],
        vec!["status"],
        vec!["--json", "status"],
        vec!["failed", "list"],
        vec!["failed", "retry", "all"],
        vec!["failed", "purge"],
        vec!["kpis", "generate"],
        vec!["leaderboard", "update"],
        vec!["reconcile", "--fix"],
    ];
    let mut checked = 0;
    for (setting, url) in &cases {
        let vars = with_var(&env, setting, url);
        for args in &commands {
            let out = producer(&vars, args);
            let printed = text(&out);
            assert_no_password(&format!("producer {args:?} with {setting}"), &printed);
            checked += 1;
        }
        // The consumer: refuses the URL (exit 2), fails the login (exit 1), or waits for
        // the server saying so; in every case its log holds no password.
        let logs = LogDir::new();
        let spec = ConsumerSpec::new(&env, "pw", &[])
            .with_env(setting, url)
            .with_env("RUST_LOG", "debug");
        let mut consumer = ConsumerProc::spawn(&spec, &logs);
        wait_for("the consumer to exit or report", DEADLINE, || {
            let exited = consumer.exited().is_some();
            let log = consumer.log();
            async move {
                (exited || log.contains("retrying") || log.contains("cannot reach")).then_some(())
            }
        })
        .await;
        consumer.kill();
        let log = consumer.log();
        assert_no_password(&format!("consumer with {setting}"), &log);
        assert!(
            log.contains("DATABASE_URL")
                || log.contains("REDIS_URL")
                || log.contains("cannot reach"),
            "the consumer says what is wrong:\n{log}"
        );
    }
    eprintln!(
        "{checked} producer runs and {} consumer starts printed no password",
        cases.len()
    );
    // The URL as typed is refused as a usage error, naming the setting only.
    let out = producer(&with_var(&env, "DATABASE_URL", &cases[0].1), &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("DATABASE_URL is not a valid URL"),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------
// OMS_PREFIX

#[tokio::test]
async fn a_prefix_with_pattern_characters_is_refused_and_reconcile_deletes_only_its_own_keys() {
    let env = TestEnv::new().await;
    let glob = format!("{}*", env.keys.prefix());
    // A key of "another system" that the glob would match: `<prefix>OTHER:kpi:daily:…`.
    let victim = format!("{}OTHER:kpi:daily:2026-01-01", env.keys.prefix());
    let mut conn = env.redis_conn().await;
    let _: () = redis::cmd("HSET")
        .arg(&victim)
        .arg("revenue")
        .arg("1.00")
        .query_async(&mut *conn)
        .await
        .unwrap();

    for prefix in [glob.as_str(), "a?b:", "a[bc]:", "a\\b:"] {
        let out = producer(
            &with_var(&env, "OMS_PREFIX", prefix),
            &["reconcile", "--fix"],
        );
        assert_eq!(out.status.code(), Some(2), "{prefix}: {}", text(&out));
        let printed = text(&out);
        assert!(
            printed.contains("OMS_PREFIX") && printed.lines().count() == 1,
            "{printed}"
        );
    }
    // Even called as a library, bypassing the check, reconcile --fix keeps its hands off.
    let mut config = env.config.clone();
    config.prefix = glob.clone();
    oms_reports::reconcile::reconcile(&config, true)
        .await
        .expect("reconcile");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&victim)
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(exists, "{victim} was deleted by a reconcile under {glob:?}");
}

// ---------------------------------------------------------------------------------------
// --rejects

const REJECTS_CSV: &str = "customer_name,customer_email,products\n\
    =HYPERLINK(\"http://x\"),not-an-email,[]\n\
    +cmd,bad,[]\n\
    -2+3,bad,[]\n\
    @SUM(A1),bad,[]\n\
    \tTab,bad,[]\n\
    Plain,bad,[]\n";

#[tokio::test]
async fn rejects_file_is_new_private_written_after_connecting_and_formula_safe() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new().await;
    let vars = env.env_vars();
    let orders = env.file(REJECTS_CSV);
    let orders = orders.path().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let imports = || env.scalar("SELECT COUNT(*) FROM imports");

    // An existing file is refused without --force, untouched, and nothing is imported.
    let existing = path("existing.csv");
    std::fs::write(&existing, "keep me").unwrap();
    let out = producer(&vars, &["import", &orders, "--rejects", &existing]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    assert_eq!(imports().await, 0);

    // A symlink is refused; with --force the link is replaced and its target untouched.
    let target = path("target.txt");
    std::fs::write(&target, "precious").unwrap();
    let link = path("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = producer(&vars, &["import", &orders, "--rejects", &link]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

    // The connection fails: even with --force the existing file is not truncated, and a
    // new path is not created.
    let unreachable = with_var(&env, "REDIS_URL", "redis://127.0.0.1:1");
    let out = producer(
        &unreachable,
        &["import", &orders, "--rejects", &existing, "--force"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let fresh = path("fresh.csv");
    let out = producer(&unreachable, &["import", &orders, "--rejects", &fresh]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!std::path::Path::new(&fresh).exists());

    // Success through the link with --force: a new private file, formulas neutralised.
    let out = producer(&vars, &["import", &orders, "--rejects", &link, "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by a file"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let mut reader = csv::Reader::from_path(&link).unwrap();
    let raws: Vec<String> = reader
        .records()
        .map(|r| r.unwrap().get(3).unwrap().to_string())
        .collect();
    assert_eq!(raws.len(), 6, "{raws:?}");
    for raw in &raws[..5] {
        assert!(
            raw.starts_with('\''),
            "formula cell not neutralised: {raw:?}"
        );
    }
    assert_eq!(raws[5], "Plain,bad,[]");
    assert_eq!(raws[0], "'=HYPERLINK(\"http://x\"),not-an-email,[]");
    // Without --force the same path is now refused again.
    let out = producer(&vars, &["import", &orders, "--rejects", &link, "--new"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------
// stdin spool

/// `producer import -` reading from a pipe that never ends, with its own TMPDIR; returns
/// the child once it has read 1 MiB (it is spooling) and the pipe's writing end.
fn import_from_endless_stdin(
    env: &TestEnv,
    tmp: &std::path::Path,
) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = Command::new(binary("producer"))
        .args(["import", "-"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .envs(env.env_vars())
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    let mut stdin = child.stdin.take().unwrap();
    let mut data = String::from("customer_name,customer_email,products\n");
    while data.len() < 1 << 20 {
        data.push_str("Ann,ann@example.com,\"[{\"\"sku\"\":\"\"P1\"\",\"\"quantity\"\":1}]\"\n");
    }
    // A pipe holds 64 KiB: once this returns, the producer has read most of it.
    stdin.write_all(data.as_bytes()).expect("feed stdin");
    (child, stdin)
}

fn wait_exit(child: &mut std::process::Child, deadline: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("the producer did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn sigint_during_a_stdin_spool_stops_at_once_and_no_spool_outlives_the_process() {
    let env = TestEnv::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, stdin) = import_from_endless_stdin(&env, tmp.path());
    let sent = Instant::now();
    oms_tests::servers::signal(child.id(), "-INT");
    let status = wait_exit(&mut child, Duration::from_secs(5));
    eprintln!(
        "SIGINT during the spool: exit {status:?} after {:?}",
        sent.elapsed()
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        files_in(tmp.path()).is_empty(),
        "{:?}",
        files_in(tmp.path())
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM imports").await, 0);
    drop(stdin);

    // SIGKILL: the kernel frees the unnamed spool; nothing is left in TMPDIR.
    let (mut child, stdin) = import_from_endless_stdin(&env, tmp.path());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(
        files_in(tmp.path()).is_empty(),
        "{:?}",
        files_in(tmp.path())
    );
}

// ---------------------------------------------------------------------------------------
// The metrics port

/// `GET path` over a fresh connection; `None` if the connection is closed without a reply.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    (!reply.is_empty()).then_some(reply)
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the server closes `stream` (EOF or reset); how long that took.
fn closed_by_server(stream: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let mut buf = [0u8; 512];
    while start.elapsed() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[tokio::test]
async fn the_metrics_port_bounds_slow_and_many_clients_while_orders_flow() {
    let env = TestEnv::new().await;
    env.product("A", "2.00", 1_000_000).await;
    let logs = LogDir::new();
    let spec = ConsumerSpec::new(&env, "port", &[]);
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    let addr = consumer.metrics_addr(DEADLINE).await.to_string();
    let idle_fds = open_fds(consumer.pid());

    // A slow-header client: one byte of a request head every 200 ms.
    let mut slow = TcpStream::connect(&addr).unwrap();
    let mut dripper = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if dripper.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Many idle connections, held open by this test.
    let mut many: Vec<TcpStream> = (0..600)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let opened = Instant::now();

    // Orders keep flowing meanwhile.
    let import = env.import_row().await;
    let rows: Vec<_> = (0..2_000u64)
        .map(|i| {
            order_row(
                &format!("port{i}"),
                i + 2,
                &format!("c{}@example.com", i % 50),
                &[("A", 1)],
            )
        })
        .collect();
    env.enqueue(import, &rows, 100).await;
    let mut peak_fds = 0;
    for _ in 0..20 {
        peak_fds = peak_fds.max(open_fds(consumer.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_settled(&env, 2_000, DEADLINE).await;
    eprintln!(
        "600 idle connections + a slow header: 2,000 orders settled in {:?}, consumer fds {idle_fds} idle, peak {peak_fds}",
        opened.elapsed()
    );
    assert!(
        peak_fds <= idle_fds + 64 + 24,
        "the consumer held {peak_fds} file descriptors (idle {idle_fds}): connections are not bounded"
    );

    // /healthz answers while the 600 sockets are still open on this side.
    let healthz = wait_for("/healthz to answer", Duration::from_secs(15), || {
        let reply = http_get(&addr, "/healthz");
        async move { reply }
    })
    .await;
    assert!(
        healthz.starts_with("HTTP/1.1 200") && healthz.ends_with("ok\n"),
        "{healthz}"
    );
    eprintln!(
        "/healthz answered {:?} after the flood began",
        opened.elapsed()
    );

    // The server closed the slow header and every idle connection (header timeout 5 s).
    let slow_closed = closed_by_server(&mut slow, Duration::from_secs(15));
    assert!(
        slow_closed.is_some(),
        "the slow-header connection is still open after {:?}",
        opened.elapsed()
    );
    for (i, s) in many.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(10)).is_some(),
            "idle connection {i} still open after {:?}",
            opened.elapsed()
        );
    }
    let ready = http_get(&addr, "/readyz").expect("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        consumer.log()
    );
}

// ---------------------------------------------------------------------------------------
// OMS_ENV_FILE (supervisor): the env file read literally, as systemd reads it

#[tokio::test]
async fn the_env_file_is_read_literally_never_through_a_shell() {
    use oms_tests::servers::{RedisOptions, RedisServer};
    // The finding: under supervisor's `sh -c '. consumer.env'`, `pa$word1` became `pa`.
    let password = "pa$word1";
    let redis = RedisServer::start(RedisOptions {
        password: Some(password.into()),
        ..RedisOptions::default()
    })
    .await;
    let env = TestEnv::on_servers(
        &oms_tests::mysql_server(),
        &redis.url_with_auth("", password),
    )
    .await;
    env.product("A", "1.00", 1_000).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let file = dir.path().join("consumer.env");
    std::fs::write(
        &file,
        format!(
            "# as in ops/systemd/consumer.env.example\n\
             DATABASE_URL={}\n\
             REDIS_URL=redis://:{password}@127.0.0.1:{}\n\
             OMS_PREFIX='{}'\n\
             CONSUMER_METRICS_ADDR=127.0.0.1:9\n\
             CONSUMER_PAYMENT_SEED=$(touch {})\n",
            env.config.database_url,
            redis.port,
            env.keys.prefix(),
            marker.display()
        ),
    )
    .unwrap();
    let only_file = |cmd: &mut Command| {
        cmd.env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("OMS_PREFIX")
            .env("OMS_ENV_FILE", &file);
    };
    // The producer: authenticated with the literal password.
    let mut cmd = Command::new(binary("producer"));
    cmd.args(["--json", "status"]);
    only_file(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{}orders", env.keys.prefix())),
        "{}",
        text(&out)
    );
    // The consumer, started as supervisor starts it: refuses `$(touch …)` as a seed (a
    // usage error, exit 2) and runs nothing.
    let mut cmd = Command::new(binary("consumer"));
    cmd.args(["--name", "envfile-64", "--metrics-port", "0"]);
    only_file(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!marker.exists(), "a value of the env file ran a command");
    // Without the bad line it processes orders, the password read as typed.
    let contents = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = contents
        .lines()
        .filter(|l| !l.starts_with("CONSUMER_PAYMENT_SEED"))
        .collect();
    std::fs::write(&file, kept.join("\n")).unwrap();
    let import = env.import_row().await;
    let rows: Vec<_> = (0..50u64)
        .map(|i| order_row(&format!("envfile{i}"), i + 2, "e@example.com", &[("A", 1)]))
        .collect();
    env.enqueue(import, &rows, 10).await;
    let logs = LogDir::new();
    let mut spec = ConsumerSpec::new(&env, "envfile-65", &["--metrics-port", "0"]);
    spec.env = vec![("OMS_ENV_FILE".into(), file.display().to_string())];
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    wait_settled(&env, 50, DEADLINE).await;
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        consumer.log()
    );
    assert!(!consumer.log().contains(password), "{}", consumer.log());
}
