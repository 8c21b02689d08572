//! `import --wait` and `status --watch` ride out outages like the import does: through a
//! 10 s Redis restart and a 10 s MariaDB restart (private servers) while a consumer runs,
//! they say what they wait for and go on; `--wait` exits 0 with the outcome MySQL holds.

use std::process::Command;
use std::time::Duration;

use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::{
    CrashableServer, MariaDbServer, RedisOptions, RedisPersistence, RedisServer,
};
use oms_tests::{binary, wait_for, TestEnv};

use crate::fence::{orders_csv, producer, spawn_producer, wait_exit};

const DEADLINE: Duration = Duration::from_secs(120);
/// How long each server stays down: the outage the scenario is about, not a wait for an
/// event.
const OUTAGE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn import_wait_rides_out_a_redis_and_a_mariadb_outage_and_exits_0() {
    let mut mariadb = MariaDbServer::start().await;
    let mut redis = RedisServer::start(RedisOptions {
        persistence: RedisPersistence::AofEverysec,
        ..RedisOptions::default()
    })
    .await;
    let env = TestEnv::on_servers(&mariadb.server_url(), &redis.url()).await;
    env.product("A", "1.00", 1_000_000).await;
    // The consumer runs but reads nothing until resumed: the outages fall inside the wait.
    let out = producer(&env, &["queue", "pause"]);
    assert!(out.status.success(), "{out:?}");
    let logs = LogDir::new();
    let mut consumer = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "rider", &["--claim-idle-secs", "3"]),
        &logs,
    );
    let n = 2_000;
    let file = env.file(&orders_csv(n));
    let path = file.path().to_str().unwrap().to_string();
    let (child, stderr) = spawn_producer(&env, &["import", &path, "--wait", "--json"]);
    wait_for(
        "the import enqueued and --wait following it",
        DEADLINE,
        || async {
            (env.scalar("SELECT COUNT(*) FROM imports WHERE status = 'finished'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let import = env.scalar("SELECT MAX(id) FROM imports").await.to_string();
    let watch_out = logs.path().join("watch.out");
    let watch_err = logs.path().join("watch.err");
    let mut watch = Command::new(binary("producer"))
        .args(["status", &import, "--watch", "--interval", "0.5", "--json"])
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&watch_out).unwrap())
        .stderr(std::fs::File::create(&watch_err).unwrap())
        .spawn()
        .expect("spawn status --watch");

    redis.stop();
    tokio::time::sleep(OUTAGE).await;
    redis.boot().await;
    mariadb.stop();
    tokio::time::sleep(OUTAGE).await;
    mariadb.boot().await;

    let out = producer(&env, &["queue", "resume"]);
    assert!(out.status.success(), "{out:?}");
    let out = wait_exit(child, DEADLINE).await;
    // The reader thread ends at EOF, once the process is gone.
    let lines: Vec<String> = stderr.iter().collect();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}\nstdout: {}",
        lines.join("\n"),
        String::from_utf8_lossy(&out.stdout)
    );
    for line in lines
        .iter()
        .filter(|l| l.contains("waiting for") || l.contains("is back"))
    {
        eprintln!("import --wait said: {line}");
    }
    for server in ["Redis", "MySQL"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("waiting for {server} ("))),
            "it said what it waited for:\n{}",
            lines.join("\n")
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcome = &report["outcome"];
    let completed = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
        .await;
    let failed = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'failed'")
        .await;
    assert_eq!(outcome["done"], true);
    assert_eq!(outcome["dead"], 0);
    assert_eq!(outcome["completed"].as_i64(), Some(completed));
    assert_eq!(outcome["failed_total"].as_i64(), Some(failed));
    assert_eq!(completed + failed, n as i64);

    // `status --watch` went on through both outages, said so, and shows the import done.
    wait_for(
        "status --watch showing the import done",
        DEADLINE,
        || async {
            let text = std::fs::read_to_string(&watch_out).ok()?;
            let last = text.lines().last()?.to_string();
            last.contains("\"done\":true").then_some(())
        },
    )
    .await;
    assert!(watch.try_wait().unwrap().is_none(), "status --watch exited");
    oms_tests::servers::signal(watch.id(), "-INT");
    let code = watch.wait().unwrap().code();
    let said = std::fs::read_to_string(&watch_err).unwrap();
    assert_eq!(code, Some(0), "{said}");
    eprintln!("status --watch said:\n{said}");
    for server in ["Redis", "MySQL"] {
        assert!(
            said.contains(&format!("waiting for {server} (")),
            "status --watch said what it waited for:\n{said}"
        );
    }
    consumer.terminate(Duration::from_secs(30));
    drop(env);
}
