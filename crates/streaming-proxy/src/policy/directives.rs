//! `Cache-Control` directives (RFC 9111 §5.2, RFC 5861) read with the list and
//! quoted-string grammar of RFC 9110 §5.6.
//!
//! Hand-written rather than taken from `headers::CacheControl` (hyperium): that
//! type has no `stale-while-revalidate`/`stale-if-error` and drops the field-name
//! lists of `private="..."` and `no-cache="..."`, which a shared cache must act on
//! (§5.2.2.4, §5.2.2.7). The grammar is small: `#( token [ "=" ( token /
//! quoted-string ) ] )`, where a comma inside a quoted string does not end a
//! directive and `\` quotes the next character (§5.6.4).

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// The directives of every `Cache-Control` line of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives(Vec<(String, Option<String>)>);

impl Directives {
    /// Reads every `Cache-Control` value of `headers`; a line that is not visible
    /// ASCII is skipped.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut out = Vec::new();
        for value in headers.get_all(CACHE_CONTROL) {
            if let Ok(text) = value.to_str() {
                parse_into(text, &mut out);
            }
        }
        Self(out)
    }

    /// Parses one field value.
    pub fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        parse_into(text, &mut out);
        Self(out)
    }

    /// Whether directive `name` (lower case) is present, with or without argument.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The argument of the first `name` directive; `Some(None)` when it has none.
    pub fn arg(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_deref())
    }

    /// The first `name=delta-seconds` (§1.2.2): a value beyond `u32` saturates; an
    /// argument that is not digits makes the directive count as absent.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        let arg = self.arg(name)??;
        if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(
            arg.parse::<u64>()
                .unwrap_or(u64::MAX)
                .min(u64::from(u32::MAX)),
        )
    }

    /// The field names of a qualified `name="a, b"` directive (lower case); `None`
    /// when the directive is absent or unqualified.
    pub fn field_names(&self, name: &str) -> Option<Vec<String>> {
        let arg = self.arg(name)??;
        Some(
            arg.split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect(),
        )
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Appends the directives of `text` to `out`. Malformed elements are skipped up to
/// the next top-level comma, so one bad directive does not hide the others.
fn parse_into(text: &str, out: &mut Vec<(String, Option<String>)>) {
    let mut chars = text.chars().peekable();
    loop {
        // OWS and empty list elements (§5.6.1).
        while chars
            .peek()
            .is_some_and(|&c| c == ',' || c == ' ' || c == '\t')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek().filter(|&&c| is_tchar(c)) {
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') {
            chars.next();
        }
        let mut arg = None;
        let mut good = !name.is_empty();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
                good &= closed;
            } else {
                while let Some(&c) = chars.peek().filter(|&&c| is_tchar(c)) {
                    value.push(c);
                    chars.next();
                }
            }
            arg = Some(value);
        }
        // Anything but the end or a comma here makes the element malformed.
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            if c != ' ' && c != '\t' {
                good = false;
            }
            chars.next();
        }
        if good {
            out.push((name, arg));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_lists_and_odd_spacing() {
        let d = Directives::parse(
            r#"private="set-cookie, x-user", MAX-AGE = 60,, no-cache="a\"b", s-maxage=x1"#,
        );
        assert_eq!(
            d.field_names("private"),
            Some(vec!["set-cookie".into(), "x-user".into()])
        );
        assert_eq!(d.seconds("max-age"), Some(60));
        assert_eq!(d.arg("no-cache"), Some(Some("a\"b")));
        assert_eq!(d.seconds("s-maxage"), None, "not delta-seconds");
        assert!(!d.has("x-user\""), "a comma inside quotes does not split");
        let d = Directives::parse("max-age=\"30\", public, max-age=5");
        assert_eq!(d.seconds("max-age"), Some(30), "the first one counts");
        assert!(d.has("public"));
        let d = Directives::parse("max-age=99999999999999, private=\"unterminated, public");
        assert_eq!(d.seconds("max-age"), Some(u64::from(u32::MAX)));
        assert!(!d.has("private") && !d.has("public"));
        assert_eq!(Directives::parse(" , ,"), Directives::default());
    }
}
