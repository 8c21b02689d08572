//! `OMS_ENV_FILE`: settings read from a file, the way systemd's `EnvironmentFile=` reads
//! it, so that one `/etc/oms/consumer.env` means the same under systemd and under
//! supervisor (which has no such option, and used to `.` the file through a shell: `$`,
//! backquotes and `$(…)` in a password were expanded or run).
//!
//! The rules (systemd.exec(5), "EnvironmentFile="): one `KEY=VALUE` per line; empty lines
//! and lines starting with `#` or `;` are ignored; white space around the key and before
//! the value is dropped, and after an unquoted value too; a value in single quotes is
//! taken literally; in double quotes, `\"`, `\\`, `` \` `` and `\$` stand for the character;
//! unquoted, a backslash takes the next character literally; a line ending in a backslash
//! goes on on the next line. Nothing is ever expanded or run: `pa$word1` is `pa$word1`.
//! Stricter than systemd: a line with no `=`, a bad key or an unclosed quote is an error
//! naming the file and line, instead of being skipped.
//!
//! Values from the file win over the inherited environment (as `EnvironmentFile=` wins over
//! `Environment=`); flags still win over both.

use std::path::Path;

use crate::error::{OmsError, Result};

/// The variable naming the file.
pub(crate) const ENV_FILE_VAR: &str = "OMS_ENV_FILE";

/// Parses the text of an environment file into `(key, value)` pairs, in file order.
pub fn parse(text: &str, file: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, first)) = lines.next() {
        let line_no = index + 1;
        // A line ending in a backslash goes on on the next line.
        let mut line = first.to_string();
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let bad =
            |why: &str| OmsError::Config(format!("{ENV_FILE_VAR} {file} line {line_no}: {why}"));
        let (key, value) = trimmed
            .split_once('=')
            .ok_or_else(|| bad("expected KEY=VALUE"))?;
        let key = key.trim();
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(bad("the name must be letters, digits and _"));
        }
        let value = parse_value(value.trim_start()).map_err(bad)?;
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// One value: quoted or not, see the module comment.
fn parse_value(raw: &str) -> std::result::Result<String, &'static str> {
    let mut out = String::new();
    let mut chars = raw.chars();
    match raw.chars().next() {
        Some('\'') => {
            chars.next();
            let rest: String = chars.collect();
            let (inside, after) = rest.split_once('\'').ok_or("unclosed single quote")?;
            if !after.trim().is_empty() {
                return Err("text after the closing quote");
            }
            Ok(inside.to_string())
        }
        Some('"') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unclosed double quote"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '`' | '$')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("unclosed double quote"),
                    },
                    Some(c) => out.push(c),
                }
            }
            if !chars.as_str().trim().is_empty() {
                return Err("text after the closing quote");
            }
            Ok(out)
        }
        _ => {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(next) = chars.next() {
                            out.push(next);
                        }
                    }
                    c => out.push(c),
                }
            }
            Ok(out.trim_end().to_string())
        }
    }
}

/// Reads the file named by [`ENV_FILE_VAR`], if set, into the process environment.
/// Call it first thing in `main`, before any thread starts and before flags are parsed.
pub(crate) fn load_from_env() -> Result<()> {
    let Some(path) = std::env::var_os(ENV_FILE_VAR) else {
        return Ok(());
    };
    let path = Path::new(&path);
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| OmsError::Config(format!("{ENV_FILE_VAR} {shown}: cannot read: {e}")))?;
    for (key, value) in parse(&text, &shown)? {
        // Safe: called at the start of main, while the process has one thread.
        std::env::set_var(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> String {
        let pairs = parse(line, "t.env").unwrap();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        pairs[0].1.clone()
    }

    #[test]
    fn values_are_taken_literally_never_expanded_or_run() {
        assert_eq!(one("P=pa$word1"), "pa$word1");
        assert_eq!(one("P=$(touch /tmp/x)"), "$(touch /tmp/x)");
        assert_eq!(one("P=`id`"), "`id`");
        assert_eq!(one("P=a;b&&c|d"), "a;b&&c|d");
        assert_eq!(
            one("DATABASE_URL=mysql://oms:pa$word1@db:3306/oms"),
            "mysql://oms:pa$word1@db:3306/oms"
        );
    }

    #[test]
    fn quotes_escapes_and_white_space_follow_systemd() {
        assert_eq!(one("P='a $b \\c'"), "a $b \\c");
        assert_eq!(one(r#"P="a \"q\" \$b \\ \x""#), r#"a "q" $b \ \x"#);
        assert_eq!(one("  P =  spaced value  "), "spaced value");
        assert_eq!(one(r"P=a\ b\\c"), r"a b\c");
        assert_eq!(one("P="), "");
        assert_eq!(one("P=a\\\nb"), "ab");
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_bad_lines_named() {
        let pairs = parse("# c\n; c\n\nA=1\n  # indented\nB=2\n", "t.env").unwrap();
        assert_eq!(
            pairs,
            vec![("A".into(), "1".into()), ("B".into(), "2".into())]
        );
        for (bad, line) in [
            ("A=1\nnot a pair\n", 2),
            ("1A=x", 1),
            ("A='x", 1),
            ("A=\"x", 1),
        ] {
            let e = parse(bad, "t.env").unwrap_err().to_string();
            assert!(e.contains(&format!("t.env line {line}")), "{bad:?}: {e}");
        }
    }
}
