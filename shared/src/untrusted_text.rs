//! Client input made safe to show in a log line or a message: every control, bidi-override
//! and zero-width character is written as `\u{XXXX}`, so a newline or ESC in an identity,
//! a name or a Host header cannot forge a log line or colour a terminal, and an RTL
//! override cannot turn a name around. [`visible`] builds a `String`; [`Visible`] writes
//! through a formatter (no allocation: the consumer logs identities per refused row).

use std::fmt;

/// Characters that change how the text around them shows, or do not show at all.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x061c | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xfeff)
}

/// `text` with every [`hidden`] character written as `\u{XXXX}`.
pub fn visible(text: &str) -> String {
    Visible(text).to_string()
}

/// Displays its value with every [`hidden`] character written as `\u{XXXX}`:
/// `tracing::warn!(identity = %Visible(&row.identity), ...)`.
pub struct Visible<T>(pub T);

impl<T: fmt::Display> fmt::Display for Visible<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut rest = s;
                while let Some((at, c)) = rest.char_indices().find(|&(_, c)| hidden(c)) {
                    self.0.write_str(&rest[..at])?;
                    write!(self.0, "\\u{{{:04x}}}", c as u32)?;
                    rest = &rest[at + c.len_utf8()..];
                }
                self.0.write_str(rest)
            }
        }
        use fmt::Write;
        write!(Escaping(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_zero_width_are_escaped_and_the_rest_kept() {
        assert_eq!(
            visible("a\nb\u{1b}[31mc\u{202e}d\u{200b}é🙂"),
            "a\\u{000a}b\\u{001b}[31mc\\u{202e}d\\u{200b}é🙂"
        );
        assert_eq!(visible("plain"), "plain");
        // Through Display of another type too (an error's message).
        let err = format!("{}", Visible(format_args!("bad {}", "x\r\ny")));
        assert_eq!(err, "bad x\\u{000d}\\u{000a}y");
    }
}
