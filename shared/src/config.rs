//! Connection settings shared by both binaries: flags with environment fallbacks
//! (`DATABASE_URL`, `REDIS_URL`, `OMS_PREFIX`), validated once at start.
//!
//! URLs may carry passwords: they are only ever shown through [`redact_url`], and
//! `Debug` of [`ConnectionConfig`] redacts them too.

use std::fmt;

use crate::error::{OmsError, Result};

pub const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/oms";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PREFIX: &str = "oms:";

/// Where MySQL and Redis are, and the prefix of every Redis key.
#[derive(Clone, clap::Args)]
pub struct ConnectionConfig {
    /// MySQL/MariaDB URL; the database is created by `producer migrate` if missing.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,

    /// Redis URL (`redis://`, `rediss://` for TLS, `redis://user:password@host:port/db`).
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, global = true, hide_env_values = true)]
    pub redis_url: String,

    /// Prefix of every Redis key, so several systems or tests can share one Redis.
    #[arg(long, env = "OMS_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    pub prefix: String,
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &redact_url(&self.redis_url))
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl ConnectionConfig {
    pub fn new(database_url: &str, redis_url: &str, prefix: &str) -> Self {
        ConnectionConfig {
            database_url: database_url.to_string(),
            redis_url: redis_url.to_string(),
            prefix: prefix.to_string(),
        }
    }

    /// Checks the URLs' schemes, the database name and the prefix; says which is wrong.
    pub fn validate(&self) -> Result<()> {
        let db = &self.database_url;
        if !(db.starts_with("mysql://") || db.starts_with("mariadb://")) {
            return Err(OmsError::Config(format!(
                "DATABASE_URL {} must start with mysql://",
                redact_url(db)
            )));
        }
        database_name(db)?;
        let r = &self.redis_url;
        if !(r.starts_with("redis://") || r.starts_with("rediss://") || r.starts_with("unix://")) {
            return Err(OmsError::Config(format!(
                "REDIS_URL {} must start with redis://, rediss:// or unix://",
                redact_url(r)
            )));
        }
        if self.prefix.is_empty() || self.prefix.chars().any(|c| c.is_whitespace()) {
            return Err(OmsError::Config(format!(
                "OMS_PREFIX {:?} must be non-empty and contain no white space",
                self.prefix
            )));
        }
        Ok(())
    }
}

/// The database name in a MySQL URL: the path's first segment, letters, digits, `_` and `$`
/// only (it is interpolated into `CREATE DATABASE`, so it must be checked).
pub fn database_name(url: &str) -> Result<String> {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = after_scheme.split_once('/').map(|(_, p)| p).unwrap_or("");
    let name = path.split(['?', '/']).next().unwrap_or("");
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    {
        return Err(OmsError::Config(format!(
            "DATABASE_URL {} must name a database made of letters, digits and _ (e.g. mysql://root@127.0.0.1:3306/oms)",
            redact_url(url)
        )));
    }
    Ok(name.to_string())
}

/// The URL with its password replaced by `***`: `redis://:pw@h:1` → `redis://:***@h:1`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => format!("{scheme}://{userinfo}@{host}{tail}"),
        },
        None => url.to_string(),
    }
}

/// `host:port` of a URL, for error messages that must name the host without secrets.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = host.split('?').next().unwrap_or(host);
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            redact_url("mysql://root:pw@127.0.0.1:3306/oms"),
            "mysql://root:***@127.0.0.1:3306/oms"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/oms"),
            "mysql://root@127.0.0.1:3306/oms"
        );
        assert_eq!(redact_url("rediss://u:p@a@h/"), "rediss://u:***@h/");
        assert!(!redact_url("redis://user:hunter2@h").contains("hunter2"));
    }

    #[test]
    fn host_of_names_host_and_port_without_credentials() {
        assert_eq!(
            host_of("mysql://root:pw@10.0.0.1:3306/oms"),
            "10.0.0.1:3306"
        );
        assert_eq!(host_of("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }

    #[test]
    fn database_name_is_checked() {
        assert_eq!(
            database_name("mysql://root@h:3306/oms_test_1").unwrap(),
            "oms_test_1"
        );
        assert_eq!(
            database_name("mysql://root@h/oms?ssl-mode=disabled").unwrap(),
            "oms"
        );
        assert!(database_name("mysql://root@h:3306/").is_err());
        assert!(database_name("mysql://root@h:3306/x`;drop").is_err());
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let ok = ConnectionConfig::new(DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, DEFAULT_PREFIX);
        assert!(ok.validate().is_ok());
        let bad = ConnectionConfig::new("postgres://x/y", DEFAULT_REDIS_URL, "p:");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("DATABASE_URL"));
        let bad = ConnectionConfig::new(DEFAULT_DATABASE_URL, "http://x", "p:");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("REDIS_URL"));
        let bad = ConnectionConfig::new(DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, "");
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("OMS_PREFIX"));
    }
}
