//! MySQL high availability on a 3-node MariaDB Galera cluster (`oms_tests::galera`): two
//! consumer processes, each preferring another node (`DATABASE_URL` lists every node,
//! the preferred one first), and the node one of them writes to SIGKILLed mid-run, then
//! restarted (it rejoins with a state transfer). Afterwards: every invariant holds, no
//! order is lost or doubled, `producer reconcile` exits 0, the consumer logged that it
//! moved to another node, and (hot rows) Galera certification conflicts were counted in
//! `oms_mysql_write_conflicts_total` and retried.
//!
//! Processes starting at once on different nodes all record the deployment's first Redis
//! epoch (one settings row): the losers of certification retry, none exits.
//!
//! A pool whose node leaves the primary component (`wsrep_ready=OFF`, the node isolated
//! with `gmcast.isolate`) moves to another node too.
//!
//! Sizes: each node-kill run processes 100,000 orders (issue 25's size; about 4 minutes
//! a run here, both runs side by side with a busy machine); `OMS_GALERA_ORDERS` overrides
//! it (a quicker local run).

use std::time::{Duration, Instant};

use oms_tests::galera::GaleraCluster;
use oms_tests::invariants::{account, reconcile_exit_code, violations, wait_settled};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::CrashableServer;
use oms_tests::workload::{Figures, Workload};
use oms_tests::{wait_for, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a run may take from enqueue to a settled system.
const DEADLINE: Duration = Duration::from_secs(300);

/// What the consumer logs when its pool leaves a node (`store::mysql_nodes::watch`).
const MOVED: &str = "moved to another node";

fn orders_from_env(default: u64) -> u64 {
    std::env::var("OMS_GALERA_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Orders in a terminal state, or `None` while MySQL cannot answer.
async fn terminal(env: &TestEnv) -> Option<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders WHERE status IN ('completed','failed')")
            .fetch_one(&env.db)
            .await
            .ok()?;
    Some(n)
}

/// `(orders, completed, sum of totals in cents)` on each node, read with causal reads: the
/// restarted node holds what the others do. Returns the certification failures and
/// brute-force aborts Galera counted on the nodes (since each one's last start).
async fn same_orders_on_every_node(cluster: &GaleraCluster, env: &TestEnv) -> (u64, u64) {
    let mut seen = Vec::new();
    let mut galera_conflicts = (0, 0);
    for node in &cluster.nodes {
        let url = format!("mysql://root@{}/{}", node.host(), env.database);
        let db = oms_shared::db::connect(&url, 1)
            .await
            .expect("connect to a node");
        let row: (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(status = 'completed'), 0) AS SIGNED), \
             CAST(COALESCE(SUM(total * 100), 0) AS SIGNED) FROM orders",
        )
        .fetch_one(&db)
        .await
        .expect("count orders on a node");
        for (variable, sum) in [
            ("wsrep_local_cert_failures", &mut galera_conflicts.0),
            ("wsrep_local_bf_aborts", &mut galera_conflicts.1),
        ] {
            let (_, value): (String, String) =
                sqlx::query_as(&format!("SHOW GLOBAL STATUS LIKE '{variable}'"))
                    .fetch_one(&db)
                    .await
                    .expect("a Galera status variable");
            *sum += value.parse::<u64>().unwrap_or(0);
        }
        db.close().await;
        seen.push((node.host(), row));
    }
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1),
        "the nodes disagree: {seen:?}"
    );
    galera_conflicts
}

/// `oms_mysql_write_conflicts_total` of the consumer whose `/metrics` is at `addr`.
async fn write_conflicts(addr: std::net::SocketAddr) -> u64 {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("oms_mysql_write_conflicts_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let value = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .expect("the consumer's oms_mysql_write_conflicts_total");
    value as u64
}

/// One run: `work` enqueued, consumer `c0` preferring node 1 and `c1` node 2; at a third
/// of the orders terminal (a quarter), node `victim` (1 or 2) is SIGKILLed; once its consumer has
/// moved to another node it is restarted and rejoins. Returns the write conflicts the
/// consumers counted.
async fn node_killed_mid_run(scenario: &str, work: Workload, victim: usize) -> u64 {
    let started = Instant::now();
    let mut cluster = GaleraCluster::start(3).await;
    eprintln!(
        "cluster of 3 synced ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    let env = cluster.test_env().await;
    work.seed(&env).await;
    let import = env.import_row().await;
    env.enqueue(import, &work.rows, 100).await;
    let logs = LogDir::new();
    let args = ["--claim-idle-secs", "3", "--batch-size", "500"];
    let mut consumers: Vec<ConsumerProc> = (0..2)
        .map(|i| {
            let url = cluster.database_url_from(i + 1, &env.database);
            let spec =
                ConsumerSpec::new(&env, &format!("g{i}"), &args).with_env("DATABASE_URL", &url);
            ConsumerProc::spawn(&spec, &logs)
        })
        .collect();
    let mut addrs = Vec::new();
    for c in &consumers {
        addrs.push(c.metrics_addr(DEADLINE).await);
    }
    let n = work.rows.len() as i64;
    wait_for(&format!("{} terminal orders", n / 4), DEADLINE, || async {
        (terminal(&env).await? >= n / 4).then_some(())
    })
    .await;
    let writer = &mut consumers[victim - 1];
    let mark = writer.log().len();
    cluster.nodes[victim].kill();
    eprintln!(
        "SIGKILLed node {victim} ({}) at {} terminal orders ({:.1}s)",
        cluster.nodes[victim].host(),
        terminal(&env).await.unwrap_or(-1),
        started.elapsed().as_secs_f64()
    );
    wait_for(
        &format!("{} to leave the killed node", writer.name),
        DEADLINE,
        || {
            let moved = writer.log().get(mark..).is_some_and(|l| l.contains(MOVED));
            let exited = writer.exited();
            async move {
                assert!(exited.is_none(), "consumer exited: {exited:?}");
                moved.then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "{} moved ({:.1}s)",
        writer.name,
        started.elapsed().as_secs_f64()
    );
    cluster.nodes[victim].boot().await;
    eprintln!(
        "node {victim} rejoined ({:.1}s)",
        started.elapsed().as_secs_f64()
    );

    wait_settled(&env, n, DEADLINE).await;
    let (cert_failures, bf_aborts) = same_orders_on_every_node(&cluster, &env).await;
    let mut conflicts = 0;
    for addr in &addrs {
        conflicts += write_conflicts(*addr).await;
    }
    for c in consumers.iter_mut() {
        let status = c.terminate(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "consumer {} did not exit 0 after SIGTERM ({status:?})",
            c.name
        );
    }
    let initial = work.initial_stock();
    let v = violations(&env, &initial).await;
    let a = account(&env, &work.identities(), &initial).await;
    let (code, output) = reconcile_exit_code(&env);
    let figures = Figures {
        scenario: scenario.into(),
        faults: 1,
        fault_kind: format!(
            "Galera node {victim} SIGKILL + rejoin; {conflicts} write conflicts retried, \
             Galera counted {cert_failures} certification failures and {bf_aborts} BF aborts"
        ),
        ..Figures::default()
    }
    .counted(&a, started.elapsed());
    eprintln!("{figures}");
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    assert_eq!(code, 0, "producer reconcile: {output}");
    assert_eq!(a.unexpected, 0, "orders nobody enqueued: {a:?}");
    figures.assert_clean();
    conflicts
}

#[tokio::test]
async fn galera_node_a_consumer_writes_to_sigkilled_mid_run_loses_and_doubles_nothing() {
    let work = Workload::new("gkill", orders_from_env(100_000), 300, 2_000);
    node_killed_mid_run("galera-node-kill", work, 1).await;
}

/// Four plentiful skus (plus the scarce ones): every batch of both consumers updates the
/// same product rows on two nodes, so Galera certification fails often; each failure is
/// counted and retried, and nothing is lost or doubled.
#[tokio::test]
async fn galera_node_under_hot_stock_rows_sigkilled_mid_run_counts_conflicts_and_loses_nothing() {
    let work = Workload::new("ghot", orders_from_env(100_000), 4, 2_000);
    let conflicts = node_killed_mid_run("galera-hot-rows-node-kill", work, 2).await;
    assert!(
        conflicts > 0,
        "two consumers on two nodes updating the same 7 product rows met no certification conflict"
    );
}

/// The client port of the node a pool's connection is on.
async fn node_port(pool: &sqlx::MySqlPool) -> Option<u16> {
    let (port,): (i64,) = sqlx::query_as("SELECT CAST(@@port AS SIGNED)")
        .fetch_one(pool)
        .await
        .ok()?;
    u16::try_from(port).ok()
}

#[tokio::test]
async fn a_pool_moves_off_a_node_that_left_the_primary_component() {
    let cluster = GaleraCluster::start(3).await;
    let pool = oms_shared::db::connect(&format!("{}/mysql", cluster.server_url_from(1)), 2)
        .await
        .expect("connect to the cluster");
    assert_eq!(node_port(&pool).await, Some(cluster.nodes[1].port));
    let isolated = format!("mysql://root@{}/mysql", cluster.nodes[1].host());
    let mut direct = <sqlx::MySqlConnection as sqlx::Connection>::connect(&isolated)
        .await
        .expect("a direct connection to node 1");
    sqlx::query("SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'")
        .execute(&mut direct)
        .await
        .expect("isolate node 1");
    wait_for("node 1 to leave the primary component", DEADLINE, || {
        let isolated = isolated.clone();
        async move {
            let mut c = <sqlx::MySqlConnection as sqlx::Connection>::connect(&isolated)
                .await
                .ok()?;
            let (_, ready): (String, String) =
                sqlx::query_as("SHOW GLOBAL STATUS LIKE 'wsrep_ready'")
                    .fetch_one(&mut c)
                    .await
                    .ok()?;
            (ready == "OFF").then_some(())
        }
    })
    .await;
    let moved_to = wait_for("the pool to serve from another node", DEADLINE, || async {
        node_port(&pool)
            .await
            .filter(|&p| p != cluster.nodes[1].port)
    })
    .await;
    assert!(
        [cluster.nodes[0].port, cluster.nodes[2].port].contains(&moved_to),
        "moved to {moved_to}, not a node of the cluster"
    );
    // Every later statement runs on the new node: no connection to the isolated one is
    // handed out again.
    for _ in 0..20 {
        assert_eq!(node_port(&pool).await, Some(moved_to));
    }
}

/// Six consumers started at the same moment, two on each node, on a deployment no process
/// has started yet: each records the first Redis epoch (`INSERT IGNORE` of one settings
/// row) on its own node, so Galera certification fails for all but one of them. Every one
/// retries and serves; none exits. Three fresh deployments, same cluster.
#[tokio::test]
async fn consumers_started_at_once_on_every_node_all_start() {
    let cluster = GaleraCluster::start(3).await;
    for round in 0..3 {
        let env = cluster.test_env().await;
        let logs = LogDir::new();
        let consumers: Vec<ConsumerProc> = (0..6)
            .map(|i| {
                let url = cluster.database_url_from(i % 3, &env.database);
                let spec = ConsumerSpec::new(&env, &format!("s{round}-{i}"), &[])
                    .with_env("DATABASE_URL", &url);
                ConsumerProc::spawn(&spec, &logs)
            })
            .collect();
        for c in &consumers {
            c.metrics_addr(DEADLINE).await;
        }
        let epochs = env
            .scalar("SELECT COUNT(*) FROM settings WHERE name = 'redis_epoch'")
            .await;
        assert_eq!(epochs, 1, "one epoch recorded");
    }
}

/// The first Redis epoch recorded from all three nodes at the same moment, 30 times: the
/// losers of Galera's certification retry, and all agree on one epoch.
#[tokio::test]
async fn the_first_epoch_recorded_on_three_nodes_at_once_is_one_epoch() {
    let cluster = GaleraCluster::start(3).await;
    let env = cluster.test_env().await;
    let mut pools = Vec::new();
    for i in 0..3 {
        let url = format!("mysql://root@{}/{}", cluster.nodes[i].host(), env.database);
        pools.push(oms_shared::db::connect(&url, 1).await.expect("a node"));
    }
    for round in 0..30 {
        sqlx::query("DELETE FROM settings WHERE name = 'redis_epoch'")
            .execute(&env.db)
            .await
            .expect("forget the epoch");
        for node in &cluster.nodes {
            node.wait_caught_up(&env.database).await;
        }
        let record = |i: usize| {
            let epoch = format!("epoch-{round}-{i}");
            let pool = pools[i].clone();
            async move { oms_shared::store::settings::record_first_redis_epoch(&pool, &epoch).await }
        };
        let (a, b, c) = tokio::join!(record(0), record(1), record(2));
        let recorded: Vec<String> = [a, b, c]
            .into_iter()
            .map(|r| r.expect("record the first epoch"))
            .collect();
        assert!(
            recorded.windows(2).all(|w| w[0] == w[1]),
            "round {round}: the nodes recorded different epochs: {recorded:?}"
        );
    }
}
