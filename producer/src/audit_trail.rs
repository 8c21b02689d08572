//! Recording the CLI's operator actions in the audit log (`audit_log`, see
//! [`oms_reports::audit`]; which commands are actions is `cli::Command::audit_action`): who ran them (`user@host`), with
//! which arguments (the command line, secrets scrubbed) and how they ended.
//!
//! Recording is best effort: an action whose database cannot be reached (or a `migrate`
//! that failed before the table existed) is logged as a warning, and the command's own
//! result and exit code are kept.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;
use oms_shared::store::audit::{self, AuditAction};

/// `user@host` of this process: `$USER` (or `$LOGNAME`, or the numeric uid) and the
/// host name.
pub fn cli_actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }));
    format!("{user}@{}", host_name())
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many
    // bytes and we read up to the first NUL (or the whole buffer).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `ok` for a success; `failed: exit N` or `failed: <error>` otherwise.
pub fn outcome_of(result: &anyhow::Result<ExitCode>) -> String {
    match result {
        Ok(code) if *code == ExitCode::SUCCESS => "ok".into(),
        Ok(code) => format!("failed: {code:?}"),
        Err(e) => format!("failed: {}", oms_shared::error::one_line(e.as_ref())),
    }
}

/// Records one CLI action (best effort: a failure to record is a warning).
pub async fn record_cli(conn: &ConnectionConfig, action: &str, result: &anyhow::Result<ExitCode>) {
    let secrets = conn.secrets();
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments = oms_shared::config::scrub(&arguments.join(" "), &secrets);
    let outcome = oms_shared::config::scrub(&outcome_of(result), &secrets);
    let entry = AuditAction {
        action,
        arguments: &arguments,
        outcome: &outcome,
        actor: &cli_actor(),
    };
    let recorded = async {
        let db = oms_shared::db::connect(&conn.database_url, 1).await?;
        audit::record(&db, &entry).await
    }
    .await;
    if let Err(e) = recorded {
        tracing::warn!(action, error = %e, "the audit log did not record this action");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_actor_is_user_at_host() {
        let actor = cli_actor();
        let (user, host) = actor.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{actor}");
    }

    #[test]
    fn outcomes_say_ok_or_why_not() {
        assert_eq!(outcome_of(&Ok(ExitCode::SUCCESS)), "ok");
        assert!(outcome_of(&Ok(ExitCode::from(1))).starts_with("failed"));
        assert_eq!(
            outcome_of(&Err(anyhow::anyhow!("no such dead letter"))),
            "failed: no such dead letter"
        );
    }
}
