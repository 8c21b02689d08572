//! Connection settings shared by both binaries: flags with environment fallbacks
//! (`DATABASE_URL`, `REDIS_URL`, `OMS_PREFIX`), validated once at start.
//!
//! URLs may carry passwords: they are only ever shown through [`redact_url`], and
//! `Debug` of [`ConnectionConfig`] redacts them too.

use std::fmt;

use crate::error::{OmsError, Result};

pub(crate) const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/oms";
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub(crate) const DEFAULT_PREFIX: &str = "oms:";

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

    /// Checks the URLs (well-formed, scheme, database name) and the prefix; says which is
    /// wrong without printing a password.
    pub fn validate(&self) -> Result<()> {
        let db = &self.database_url;
        for node in mysql_node_urls(db) {
            let parsed = parse_url("DATABASE_URL", &node)?;
            if !matches!(parsed.scheme(), "mysql" | "mariadb") {
                return Err(OmsError::Config(format!(
                    "DATABASE_URL {} must start with mysql://",
                    redact_url(db)
                )));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(OmsError::Config(format!(
                    "DATABASE_URL {} names an empty host",
                    redact_url(db)
                )));
            }
        }
        database_name(db)?;
        for r in url_list(&self.redis_url) {
            let parsed = parse_url("REDIS_URL", r)?;
            if !matches!(parsed.scheme(), "redis" | "rediss" | "unix") {
                return Err(OmsError::Config(format!(
                    "REDIS_URL {} must start with redis://, rediss:// or unix://",
                    redact_url(r)
                )));
            }
        }
        crate::redis::keys::validate_prefix(&self.prefix)?;
        if is_cluster_url(&self.redis_url) {
            crate::redis::keys::validate_cluster_prefix(&self.prefix)?;
        }
        Ok(())
    }

    /// True when `REDIS_URL` names a Redis Cluster (a comma-separated list of nodes).
    pub fn is_cluster(&self) -> bool {
        is_cluster_url(&self.redis_url)
    }

    /// Key names for commands that touch only the read models and flags (KPIs,
    /// leaderboard, pause): right for any partition count. Commands that touch the stream
    /// take the recorded count: `store::settings::deployment_keys`.
    pub fn read_model_keys(&self) -> crate::redis::keys::ReadModelKeys {
        crate::redis::keys::ReadModelKeys::new(&self.prefix, self.is_cluster())
    }

    /// Every secret the URLs carry (see [`url_secrets`]), for [`scrub`] at the edges.
    pub fn secrets(&self) -> Vec<String> {
        let mut all = url_secrets(&self.database_url);
        all.extend(url_secrets(&self.redis_url));
        all
    }
}

/// The URLs of a comma-separated list (`redis://h1:7000,redis://h2:7001`, a Redis Cluster),
/// when every piece has a scheme; otherwise `url` alone.
pub(crate) fn url_list(url: &str) -> Vec<&str> {
    let pieces: Vec<&str> = url.split(',').collect();
    if pieces.len() > 1 && pieces.iter().all(|p| p.contains("://")) {
        pieces
    } else {
        vec![url]
    }
}

/// The one-node URLs of a `DATABASE_URL`: `mysql://u:p@h1:3306,h2:3306/oms` (the nodes of a
/// Galera cluster, in the order a process tries them) gives `mysql://u:p@h1:3306/oms` and
/// `mysql://u:p@h2:3306/oms`; a URL naming one host, or not a `mysql://`/`mariadb://` URL,
/// gives itself.
pub(crate) fn mysql_node_urls(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_string()];
    };
    if !matches!(scheme, "mysql" | "mariadb") {
        return vec![url.to_string()];
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    if !hosts.contains(',') {
        return vec![url.to_string()];
    }
    hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect()
}

/// [`redact_url`] of a `DATABASE_URL` naming several nodes: the user, the password as
/// `***` and the path once, with the host list.
fn redact_node_list(nodes: &[String]) -> String {
    let Some(first) = nodes.first().and_then(|n| parse_checked(n)) else {
        return redact_url(nodes.first().map_or("", String::as_str));
    };
    if nodes.iter().any(|n| parse_checked(n).is_none()) {
        return format!("{}://<not a valid URL, not shown>", first.scheme());
    }
    let hosts: Vec<String> = nodes.iter().map(|n| host_of(n)).collect();
    let userinfo = match (first.username(), first.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(_)) => format!("{user}:***@"),
    };
    format!(
        "{}://{userinfo}{}{}",
        first.scheme(),
        hosts.join(","),
        &first[url::Position::BeforePath..]
    )
}

/// What to tell an operator whose URL is not well-formed (its text is never shown).
const NOT_A_URL: &str = "is not a valid URL (write it as scheme://user:password@host:port/...; \
     percent-encode / # @ : ? % and spaces in the user name and password, e.g. / as %2F)";

/// True when `REDIS_URL` is a comma-separated list of node URLs: a Redis Cluster.
pub(crate) fn is_cluster_url(url: &str) -> bool {
    url_list(url).len() > 1
}

/// `url` parsed, but only when its text cannot be misread: a password holding a raw `/`,
/// `#`, `?` or `@` ends the authority early, and the rest of the password would then
/// show up as a host, a path or a fragment. Such a URL (any `@` after the authority) and
/// one that does not parse are `None`: callers then print no part of it but its scheme.
fn parse_checked(url: &str) -> Option<url::Url> {
    let (_, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[authority_end..].contains('@') {
        return None;
    }
    url::Url::parse(url).ok()
}

fn parse_url(setting: &str, url: &str) -> Result<url::Url> {
    parse_checked(url).ok_or_else(|| OmsError::Config(format!("{setting} {NOT_A_URL}")))
}

/// The database name in a MySQL URL: the path's first segment, letters, digits, `_` and `$`
/// only (it is interpolated into `CREATE DATABASE`, so it must be checked).
pub(crate) fn database_name(url: &str) -> Result<String> {
    let first = mysql_node_urls(url).swap_remove(0);
    let parsed = parse_url("DATABASE_URL", &first)?;
    let name = parsed
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
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
/// A URL that is not well-formed (see [`parse_checked`]) shows its scheme only:
/// `mysql://<not a valid URL, not shown>`; text without `://` is not shown at all.
pub(crate) fn redact_url(url: &str) -> String {
    let nodes = mysql_node_urls(url);
    if nodes.len() > 1 {
        return redact_node_list(&nodes);
    }
    let list = url_list(url);
    if list.len() > 1 {
        return list
            .into_iter()
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(",");
    }
    match parse_checked(url) {
        Some(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        None => match url.split_once("://") {
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
            {
                format!("{scheme}://<not a valid URL, not shown>")
            }
            _ => "<not a URL, not shown>".to_string(),
        },
    }
}

/// `host:port` of a URL, for error messages that must name the host without secrets
/// (the socket path of a `unix://` URL).
pub(crate) fn host_of(url: &str) -> String {
    let nodes = mysql_node_urls(url);
    if nodes.len() > 1 {
        return nodes
            .iter()
            .map(|n| host_of(n))
            .collect::<Vec<_>>()
            .join(",");
    }
    let list = url_list(url);
    if list.len() > 1 {
        return list.into_iter().map(host_of).collect::<Vec<_>>().join(",");
    }
    let Some(parsed) = parse_checked(url) else {
        return "<the host of a URL that is not valid, not shown>".to_string();
    };
    match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) if !h.is_empty() => format!("{h}:{p}"),
        (Some(h), None) if !h.is_empty() => h.to_string(),
        _ if parsed.scheme() == "unix" => parsed.path().to_string(),
        _ => "localhost".to_string(),
    }
}

/// Shortest secret [`scrub`] replaces: shorter ones would blank out ordinary words.
const SHORTEST_SCRUBBED: usize = 4;

/// The strings of `url` that must never be printed: its password as typed and decoded;
/// for a URL that is not well-formed, everything between `://` and the last `@` (where a
/// password would be) and each piece of it between the separators `/ # ? @ :`.
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let nodes = mysql_node_urls(url);
    if nodes.len() > 1 {
        // Every node carries the same user information: the first one's secrets are all.
        return url_secrets(&nodes[0]);
    }
    let list = url_list(url);
    if list.len() > 1 {
        return list.into_iter().flat_map(url_secrets).collect();
    }
    let mut secrets = Vec::new();
    let Some((_, rest)) = url.split_once("://") else {
        // Not a URL at all: the whole text could be anything.
        secrets.push(url.to_string());
        return secrets;
    };
    match parse_checked(url) {
        Some(parsed) => {
            if let Some(password) = parsed.password() {
                secrets.push(password.to_string());
                secrets.push(percent_decode(password));
            }
        }
        None => {
            if let Some((userinfo, _)) = rest.rsplit_once('@') {
                let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
                secrets.push(password.to_string());
                secrets.push(percent_decode(password));
                secrets.extend(
                    password
                        .split(['/', '#', '?', '@', ':'])
                        .map(str::to_string),
                );
            }
        }
    }
    secrets.retain(|s| s.chars().count() >= SHORTEST_SCRUBBED);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `text` with every one of `secrets` replaced by `***` (the binaries pass every error
/// line and log line through it, a backstop behind [`redact_url`]).
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
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

    /// Passwords with the characters that end or split a URL's authority.
    const HOSTILE: [&str; 6] = [
        "mysql://root:Sup3r/Secret@127.0.0.1:3306/oms",
        "mysql://root:12/Secret@h/c@d/oms",
        "mysql://root:ab#Secret@h:3306/oms",
        "redis://:Se?cret@h:6379/0",
        "redis://u:Sec:ret@h:6379",
        "root:SuperSecret@127.0.0.1:3306/oms",
    ];

    #[test]
    fn urls_that_are_not_well_formed_show_no_authority() {
        for url in HOSTILE {
            for shown in [redact_url(url), host_of(url)] {
                assert!(!shown.contains("Secret"), "{url} → {shown}");
                assert!(!shown.contains("cret"), "{url} → {shown}");
                assert!(!shown.contains("127.0.0.1"), "{url} → {shown}");
            }
        }
        assert_eq!(
            redact_url("mysql://root:Sup3r/Secret@127.0.0.1:3306/oms"),
            "mysql://<not a valid URL, not shown>"
        );
        assert_eq!(redact_url("root:pw@h/oms"), "<not a URL, not shown>");
        for url in HOSTILE {
            let c = ConnectionConfig::new(url, DEFAULT_REDIS_URL, "p:");
            let e = c.validate().unwrap_err().to_string();
            assert!(!e.contains("cret"), "{e}");
        }
    }

    #[test]
    fn percent_encoded_passwords_are_redacted_and_scrubbed() {
        let url = "mysql://root:Pw%2FSe%40c%3Ar%25e%23t@127.0.0.1:3306/oms";
        assert_eq!(redact_url(url), "mysql://root:***@127.0.0.1:3306/oms");
        assert_eq!(host_of(url), "127.0.0.1:3306");
        assert_eq!(database_name(url).unwrap(), "oms");
        let secrets = url_secrets(url);
        assert!(
            secrets.contains(&"Pw/Se@c:r%e#t".to_string()),
            "{secrets:?}"
        );
        let line = format!("error: {url} and Pw/Se@c:r%e#t");
        let clean = scrub(&line, &secrets);
        assert!(!clean.contains("Pw") && !clean.contains("Se%40"), "{clean}");
        // Pieces of a password that broke the URL are secrets too.
        let secrets = url_secrets("mysql://root:Sup3r/Secret@127.0.0.1:3306/oms");
        assert!(
            scrub("at Sup3r and Secret", &secrets) == "at *** and ***",
            "{secrets:?}"
        );
        assert!(url_secrets("mysql://root@h/oms").is_empty());
    }

    #[test]
    fn a_list_of_node_urls_is_handled_url_by_url() {
        let list = "redis://:Secret1@h1:7000,redis://:Secret2@h2:7001";
        assert_eq!(
            redact_url(list),
            "redis://:***@h1:7000,redis://:***@h2:7001"
        );
        assert_eq!(host_of(list), "h1:7000,h2:7001");
        assert_eq!(url_secrets(list).len(), 2);
        let c = ConnectionConfig::new(DEFAULT_DATABASE_URL, list, "p:");
        assert!(c.validate().is_ok());
        let c = ConnectionConfig::new(DEFAULT_DATABASE_URL, "redis://h1,http://h2", "p:");
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_database_url_naming_several_nodes_is_split_node_by_node() {
        let url = "mysql://oms:s3cret@h1:3306,h2:3307,h3/oms?ssl-mode=disabled";
        assert_eq!(
            mysql_node_urls(url),
            vec![
                "mysql://oms:s3cret@h1:3306/oms?ssl-mode=disabled",
                "mysql://oms:s3cret@h2:3307/oms?ssl-mode=disabled",
                "mysql://oms:s3cret@h3/oms?ssl-mode=disabled",
            ]
        );
        assert_eq!(
            redact_url(url),
            "mysql://oms:***@h1:3306,h2:3307,h3/oms?ssl-mode=disabled"
        );
        assert_eq!(host_of(url), "h1:3306,h2:3307,h3");
        assert_eq!(database_name(url).unwrap(), "oms");
        assert!(url_secrets(url).contains(&"s3cret".to_string()));
        assert_eq!(
            mysql_node_urls("mysql://root@h:1/oms"),
            vec!["mysql://root@h:1/oms"]
        );
        assert_eq!(mysql_node_urls("redis://a:1,redis://b:2").len(), 1);
        let config = ConnectionConfig::new(url, DEFAULT_REDIS_URL, DEFAULT_PREFIX);
        assert!(config.validate().is_ok());
        let empty = ConnectionConfig::new("mysql://root@h1:3306,/oms", DEFAULT_REDIS_URL, "p:");
        let err = empty.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("invalid configuration: DATABASE_URL"),
            "{err}"
        );
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
