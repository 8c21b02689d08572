//! oms on a real Redis Cluster (3 primaries, 3 replicas, started by `tests/src/cluster.rs`)
//! with a partitioned stream: imports through the `producer` binary, two `consumer`
//! processes, and the invariant checker; then the same with a primary SIGKILLed mid-run
//! (one holding stream partitions, then the one holding the read models), its replica
//! promoted and the old primary restarted as a replica: nothing may be lost or doubled,
//! and `producer reconcile` must exit 0.
//!
//! Each test starts its own cluster; they run one at a time (a cluster and two consumers
//! already keep this machine's cores busy). Run them with
//! `cargo test -p oms-tests --test it -- cluster::`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use oms_shared::redis::keys::hash_slot;
use oms_tests::cluster::RedisCluster;
use oms_tests::invariants::{account, reconcile_exit_code, violations, wait_settled};
use oms_tests::procs::{spawn_import, wait_import, ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::workload::{Figures, Workload};
use oms_tests::{wait_for, TestEnv};

/// One cluster test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn consumers(env: &TestEnv, logs: &LogDir) -> Vec<ConsumerProc> {
    ["cluster-a", "cluster-b"]
        .iter()
        .map(|name| {
            let spec = ConsumerSpec::new(env, name, &["--claim-idle-secs", "5"]);
            ConsumerProc::spawn(&spec, logs)
        })
        .collect()
}

/// Checks accounting, invariants and `producer reconcile` after the load settled.
async fn check_settled(
    env: &TestEnv,
    workload: &Workload,
    initial: &std::collections::BTreeMap<String, i64>,
    mut figures: Figures,
    started: Instant,
) {
    let expected: BTreeSet<String> = workload.identities();
    let a = account(env, &expected, initial).await;
    figures.completed = a.completed;
    figures.failed = a.failed;
    figures.dead_lettered = a.dead_lettered;
    figures.lost = a.lost;
    figures.doubled = a.doubled;
    figures.duration = started.elapsed();
    figures.report();
    assert_eq!(a.unexpected, 0, "unexpected orders: {a:?}");
    let v = violations(env, initial).await;
    assert!(v.is_empty(), "invariants broken: {v:#?}");
    let (code, out) = reconcile_exit_code(env);
    assert_eq!(code, 0, "producer reconcile found drift:\n{out}");
}

/// Every partition's group delivered something: the producer spread the orders and the
/// consumers read every partition.
async fn assert_every_partition_used(env: &TestEnv) {
    let mut conn = env.redis_conn().await;
    let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
        .await
        .expect("group stats");
    assert_eq!(stats.partitions.len(), 16);
    for p in &stats.partitions {
        let one =
            oms_shared::redis::queue::partition_group_stats(&mut *conn, &env.keys, p.partition)
                .await
                .expect("partition stats");
        assert_ne!(
            one.last_delivered_id, "0-0",
            "partition {} was never read",
            p.partition
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_over_16_partitions_is_processed_by_two_consumers_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().await;
    let env = TestEnv::on_cluster(&cluster, 16).await;
    let workload = Workload::new("cl", 5_000, 50, 700);
    workload.seed(&env).await;
    let initial = workload.initial_stock();
    let csv = workload.write_csv();
    let logs = LogDir::new();
    let started = Instant::now();
    let _consumers = consumers(&env, &logs);
    let import = spawn_import(&env, csv.path(), &[], &logs);
    wait_import(import, &logs, Duration::from_secs(300)).await;
    wait_settled(&env, 5_000, Duration::from_secs(300)).await;

    // Key names carry hash tags: partition 3's stream and the read models' total.
    let mut conn = env.redis_conn().await;
    let prefix = env.config.prefix.clone();
    let exists: (bool, bool) = redis::pipe()
        .exists(format!("{prefix}orders:{{3}}"))
        .exists(format!("{prefix}orders:{{3}}:dead"))
        .query_async(&mut *conn)
        .await
        .expect("exists");
    assert!(
        exists.0,
        "the stream of partition 3 is {prefix}orders:{{3}}"
    );
    let total: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}{{rm}}:kpi:total"))
        .query_async(&mut *conn)
        .await
        .expect("exists");
    assert!(total, "the KPI total is {prefix}{{rm}}:kpi:total");
    drop(conn);
    assert_every_partition_used(&env).await;
    let figures = Figures {
        scenario: "cluster P=16, 2 consumers".into(),
        orders: workload.rows.len(),
        ..Figures::default()
    };
    check_settled(&env, &workload, &initial, figures, started).await;
}

/// The failover scenario: ≥ 100,000 orders, P = 16, two consumers; once a tenth of the
/// orders ended, SIGKILL `victim` (chosen by `pick`), wait for its replica's promotion,
/// let the load go on, restart the old primary (it rejoins as a replica), then check.
async fn failover_run(scenario: &str, kill_read_models: bool) {
    const ORDERS: u64 = 100_000;
    let _serial = SERIAL.lock().await;
    let mut cluster = RedisCluster::start().await;
    let env = TestEnv::on_cluster(&cluster, 16).await;
    let workload = Workload::new("fo", ORDERS, 200, 20_000);
    workload.seed(&env).await;
    let initial = workload.initial_stock();
    let csv = workload.write_csv();
    let logs = LogDir::new();
    let started = Instant::now();
    let _consumers = consumers(&env, &logs);
    let import = spawn_import(&env, csv.path(), &[], &logs);

    wait_for(
        "a tenth of the orders terminal",
        Duration::from_secs(600),
        || async { (env.terminal_orders().await >= (ORDERS / 10) as i64).then_some(()) },
    )
    .await;
    let read_models = cluster.read_model_primary(&env.keys).await;
    let (victim, slot) = if kill_read_models {
        (read_models, env.keys.read_model_slot())
    } else {
        // A primary holding stream partitions but not the read models.
        let mut found = None;
        for p in 0..16 {
            let slot = hash_slot(&env.keys.stream(p));
            let owner = cluster.primary_of_slot(slot).await.expect("slot owner");
            if owner != read_models {
                found = Some((owner, slot));
                break;
            }
        }
        found.expect("a partition off the read models' primary")
    };
    cluster.kill(victim);
    let promoted = cluster.wait_promoted(slot, victim).await;
    eprintln!("{scenario}: killed node {victim}, node {promoted} promoted");
    // Some progress on the new topology before the old primary returns (capped: a fast
    // run may be almost done by the time the replica is promoted).
    let target = (env.terminal_orders().await + 5_000).min(ORDERS as i64);
    wait_for(
        "progress after the failover",
        Duration::from_secs(300),
        || async { (env.terminal_orders().await >= target).then_some(()) },
    )
    .await;
    cluster.boot(victim).await;
    cluster.wait_healthy().await;

    wait_import(import, &logs, Duration::from_secs(600)).await;
    wait_settled(&env, ORDERS as i64, Duration::from_secs(600)).await;
    let figures = Figures {
        scenario: scenario.into(),
        orders: workload.rows.len(),
        faults: 1,
        fault_kind: "SIGKILL of a Redis Cluster primary".into(),
        ..Figures::default()
    };
    check_settled(&env, &workload, &initial, figures, started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_holding_partitions_fails_over_mid_run_with_nothing_lost() {
    failover_run("cluster failover: partitions' primary", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_primary_holding_the_read_models_fails_over_mid_run_with_nothing_lost() {
    failover_run("cluster failover: read models' primary", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_retry_purge_status_and_repartitioning_work_on_a_cluster() {
    use oms_reports::failed::{list_from, purge_from, retry_from, RetryTarget};
    use oms_reports::status::StatusSource;
    use oms_shared::redis::partition::{partition_of, PartitionCount};

    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().await;
    let env = TestEnv::on_cluster(&cluster, 16).await;
    env.product("SKU-1", "5.00", 1_000).await;
    let import_id = env.import_row().await;
    let mut rows: Vec<_> = (0..20)
        .map(|i| {
            oms_tests::order_row(
                &format!("ok-{i}"),
                i + 2,
                &format!("c{i}@x.example"),
                &[("SKU-1", 1)],
            )
        })
        .collect();
    // Quantity 0 breaks a row rule: dead-lettered at its first delivery.
    for i in 0..3 {
        rows.push(oms_tests::order_row(
            &format!("bad-{i}"),
            100 + i,
            &format!("bad{i}@x.example"),
            &[("SKU-1", 0)],
        ));
    }
    env.enqueue(import_id, &rows, 5).await;
    let (consumer, token) = env.spawn_consumer(env.consumer_config());
    let dead_count = || async {
        let mut conn = env.redis_conn().await;
        oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
            .await
            .ok()
    };
    wait_for(
        "20 orders terminal and 3 dead letters",
        Duration::from_secs(60),
        || async {
            (env.terminal_orders().await == 20 && dead_count().await == Some(3)).then_some(())
        },
    )
    .await;

    // Dead letters: ids qualified with their partition, the partition of their email.
    let listed = list_from(&env.redis, &env.keys, 0)
        .await
        .expect("failed list");
    assert_eq!(listed.total, 3);
    let p16 = PartitionCount::new(16).unwrap();
    for letter in &listed.dead_letters {
        let (partition, _) = letter.id.split_once(':').expect("a qualified id");
        let email = format!("bad{}@x.example", letter.line - 100);
        assert_eq!(
            partition.parse::<u16>().unwrap(),
            partition_of(&email, p16),
            "{letter:?}"
        );
    }

    // Status sums the partitions and lists each.
    let status =
        StatusSource::from_pools(env.keys.clone(), env.redis.clone(), Some(env.db.clone()))
            .stream()
            .await
            .expect("status");
    assert_eq!(status.partitions.len(), 16);
    assert_eq!(status.dead_letters, 3);
    assert_eq!(
        status.length,
        status.partitions.iter().map(|p| p.length).sum::<u64>()
    );
    assert_eq!(status.pending, 0);

    // Retry one: it leaves the dead letters, runs again, and (still invalid) comes back
    // under a new id.
    let first = listed.dead_letters[0].id.clone();
    let report = retry_from(
        &env.db,
        &env.redis,
        &env.keys,
        RetryTarget::Id(first.clone()),
    )
    .await
    .expect("failed retry");
    assert_eq!(report.retried.len(), 1);
    wait_for(
        "the retried row dead again",
        Duration::from_secs(60),
        || async {
            let list = list_from(&env.redis, &env.keys, 0).await.ok()?;
            (list.total == 3 && list.dead_letters.iter().all(|d| d.id != first)).then_some(())
        },
    )
    .await;

    // The HTTP API on the cluster: the queue per partition, dead letters by qualified id.
    let api = oms_tests::api_client::ApiServer::start(
        &env,
        oms_tests::api_client::settings(Some("cluster-token"), false, 1 << 20),
    )
    .await
    .with_token("cluster-token");
    let queue = api.get("/api/queue").await;
    assert_eq!(queue.status, 200, "{}", queue.text());
    let queue = queue.json();
    assert_eq!(
        queue["partitions"].as_array().map(Vec::len),
        Some(16),
        "{queue}"
    );
    assert_eq!(queue["dead_letters"], 3, "{queue}");
    let failed = api.get("/api/failed").await.json();
    let id = failed["dead_letters"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let retried = api
        .post(&format!("/api/failed/{id}/retry"), Vec::new())
        .await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    wait_for(
        "the row retried through the API dead again",
        Duration::from_secs(60),
        || async {
            let list = list_from(&env.redis, &env.keys, 0).await.ok()?;
            (list.total == 3 && list.dead_letters.iter().all(|d| d.id != id)).then_some(())
        },
    )
    .await;

    // Changing P is refused while dead letters remain, allowed once purged.
    let refused = producer::partitions::record(&env.config, Some(8)).await;
    let message = format!(
        "{:#}",
        refused.expect_err("repartitioning with dead letters")
    );
    assert!(message.contains("3 dead letters"), "{message}");
    assert_eq!(purge_from(&env.redis, &env.keys).await.expect("purge"), 3);
    assert_eq!(dead_count().await, Some(0));
    let changed = producer::partitions::record(&env.config, Some(8))
        .await
        .expect("repartition");
    assert!(changed.changed);
    assert_eq!(
        oms_shared::store::settings::stream_partitions(&env.db)
            .await
            .unwrap()
            .get(),
        8
    );
    token.cancel();
    consumer
        .await
        .expect("consumer task")
        .expect("consumer exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_consumers_entries_are_claimed_by_another_on_a_cluster() {
    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().await;
    let env = TestEnv::on_cluster(&cluster, 16).await;
    let workload = Workload::new("kc", 20_000, 50, 3_000);
    workload.seed(&env).await;
    let initial = workload.initial_stock();
    let import_id = env.import_row().await;
    env.enqueue(import_id, &workload.rows, 100).await;
    let logs = LogDir::new();
    let started = Instant::now();
    let mut first = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "doomed", &["--claim-idle-secs", "2"]),
        &logs,
    );
    wait_for("orders under way", Duration::from_secs(120), || async {
        (env.terminal_orders().await >= 2_000).then_some(())
    })
    .await;
    first.kill();
    let held = {
        let mut conn = env.redis_conn().await;
        oms_shared::redis::queue::consumers(&mut *conn, &env.keys)
            .await
            .expect("consumers")
            .into_iter()
            .find(|c| c.name == "doomed")
            .map(|c| c.pending)
            .unwrap_or(0)
    };
    assert!(
        held > 0,
        "the killed consumer held no entries: nothing to claim"
    );
    let second = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "heir", &["--claim-idle-secs", "2"]),
        &logs,
    );
    wait_settled(&env, 20_000, Duration::from_secs(300)).await;
    assert!(
        second.log().contains("claimed idle entries"),
        "the second consumer claimed nothing:\n{}",
        second.log()
    );
    let figures = Figures {
        scenario: "cluster: SIGKILLed consumer, entries claimed".into(),
        orders: workload.rows.len(),
        faults: 1,
        fault_kind: "SIGKILL of a consumer".into(),
        ..Figures::default()
    };
    check_settled(&env, &workload, &initial, figures, started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_count_only_once_the_asked_replicas_hold_them() {
    use oms_shared::order::EncodedChunk;
    use oms_shared::redis::conn::ReplicaWait;

    let _serial = SERIAL.lock().await;
    let cluster = RedisCluster::start().await;
    let env = TestEnv::on_cluster(&cluster, 16).await;
    let chunks: Vec<EncodedChunk> = (0..16)
        .map(|p| {
            let mut c = EncodedChunk::for_partition(p);
            c.rows_json = b"[]".to_vec();
            c
        })
        .collect();
    let mut conn = env.redis_conn().await;
    // Every primary has one replica: WAIT 1 is met on every node that took an entry.
    let one = ReplicaWait::new(1);
    let ids = oms_shared::redis::queue::add_encoded_chunks_replicated(
        &mut *conn, &env.keys, 1, &chunks, one,
    )
    .await
    .expect("replicated to one replica");
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    // Two replicas are never there: the write does not count (a transient error).
    let two = ReplicaWait {
        replicas: 2,
        timeout: Duration::from_millis(200),
    };
    let err = oms_shared::redis::queue::add_encoded_chunks_replicated(
        &mut *conn, &env.keys, 1, &chunks, two,
    )
    .await
    .expect_err("no node has two replicas");
    assert!(
        matches!(
            err,
            oms_shared::OmsError::NotReplicated {
                wanted: 2,
                acked: 1
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    // The same for a read-model update: applied, but not confirmed.
    let err =
        oms_shared::redis::read_model::apply_outbox_replicated(&mut *conn, &env.keys, 1, &[], two)
            .await
            .expect_err("the read models' node has one replica");
    assert!(
        matches!(err, oms_shared::OmsError::NotReplicated { .. }),
        "{err}"
    );
    assert!(oms_shared::redis::read_model::apply_outbox_replicated(
        &mut *conn,
        &env.keys,
        1,
        &[],
        one
    )
    .await
    .is_ok());
}
