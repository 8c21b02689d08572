//! The audit log: operator actions through the CLI and the API are recorded with their
//! actor, arguments and outcome (failures included), and read back by `producer audit`
//! and `GET /api/audit`; reads are not recorded.

use std::process::{Command, Output};

use oms_tests::api_client::{settings, ApiServer};
use oms_tests::{binary, TestEnv};
use serde_json::Value;

const TOKEN: &str = "audit-token-51c2";

fn producer_as(env: &TestEnv, user: &str, args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .envs(env.env_vars())
        .env("USER", user)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run producer")
}

fn host_name() -> String {
    let out = Command::new("hostname").output().expect("run hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The entries of `producer audit --json`, oldest first.
fn cli_audit(env: &TestEnv, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "audit"];
    args.extend_from_slice(extra);
    let out = producer_as(env, "reader", &args);
    assert!(
        out.status.success(),
        "producer audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("audit --json");
    let mut entries = report["entries"].as_array().expect("entries").clone();
    entries.reverse();
    entries
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_api_actions_are_recorded_with_actor_and_outcome() {
    let env = TestEnv::new().await;
    let host = host_name();

    // CLI: two actions that succeed, one that fails, and a read (not recorded).
    assert!(producer_as(&env, "alice", &["queue", "pause"])
        .status
        .success());
    assert!(producer_as(&env, "alice", &["status"]).status.success());
    assert!(producer_as(&env, "bob", &["queue", "resume"])
        .status
        .success());
    let failed = producer_as(&env, "bob", &["failed", "retry", "1-0"]);
    assert!(
        !failed.status.success(),
        "retrying a missing dead letter fails"
    );

    // API: an action with the token, one without (refused), one that fails.
    let api = ApiServer::start(&env, settings(Some(TOKEN), false, 1 << 20)).await;
    let paused = api
        .request("POST", "/api/queue/pause", Vec::new(), Some(TOKEN))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text());
    let refused = api
        .request("POST", "/api/queue/resume", Vec::new(), None)
        .await;
    assert_eq!(refused.status, 401);
    let missing = api
        .request("POST", "/api/failed/1-0/retry", Vec::new(), Some(TOKEN))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    let entries = cli_audit(&env, &[]);
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                field(e, "action").to_string(),
                field(e, "actor").to_string(),
                field(e, "outcome")
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let api_actor = "api:OMS_API_TOKEN@127.0.0.1:";
    let expected = [
        ("queue pause", format!("alice@{host}"), "ok"),
        ("queue resume", format!("bob@{host}"), "ok"),
        ("failed retry", format!("bob@{host}"), "failed"),
        ("queue pause", api_actor.to_string(), "ok"),
        (
            "queue resume",
            "api:anonymous@127.0.0.1:".to_string(),
            "failed",
        ),
        ("failed retry", api_actor.to_string(), "failed"),
    ];
    assert_eq!(summary.len(), expected.len(), "recorded: {summary:?}");
    for ((action, actor, outcome), (want_action, want_actor, want_outcome)) in
        summary.iter().zip(expected.iter())
    {
        assert_eq!(action, want_action, "{summary:?}");
        assert!(
            actor.starts_with(want_actor.as_str()),
            "{actor} is not {want_actor}…"
        );
        assert_eq!(outcome, want_outcome, "{summary:?}");
    }
    // Arguments and the failure's reason are recorded.
    assert_eq!(field(&entries[2], "arguments"), "failed retry 1-0");
    assert!(
        field(&entries[2], "outcome").contains("1-0"),
        "the CLI failure says why: {}",
        entries[2]
    );
    assert_eq!(
        field(&entries[4], "outcome").get(..16),
        Some("failed: HTTP 401")
    );
    assert_eq!(
        field(&entries[5], "arguments"),
        "POST /api/failed/1-0/retry"
    );
    assert!(field(&entries[5], "outcome").starts_with("failed: HTTP 404"));

    // The API returns the same entries, newest first.
    let from_api = api.get("/api/audit?limit=100").await.json();
    let mut api_entries = from_api["entries"].as_array().expect("entries").clone();
    api_entries.reverse();
    assert_eq!(api_entries, entries);
    // --limit / ?limit and --since / ?since bound the answer.
    assert_eq!(cli_audit(&env, &["--limit", "2"]).len(), 2);
    assert_eq!(
        api.get("/api/audit?limit=1").await.json()["entries"][0],
        entries[5]
    );
    assert!(cli_audit(&env, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(cli_audit(&env, &["--since", "2000-01-01"]).len(), 6);
    assert_eq!(api.get("/api/audit?since=yesterday").await.status, 400);
    assert_eq!(api.get("/api/audit?limit=0").await.status, 400);
}
