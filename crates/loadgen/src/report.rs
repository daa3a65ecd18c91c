//! The machine-readable line every command ends with.

use std::fmt::Write as _;

/// Builds one JSON object on one line, fields in insertion order.
#[derive(Debug, Default)]
pub struct JsonLine {
    out: String,
}

impl JsonLine {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, key: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_string(&mut self.out, key);
        self.out.push(':');
    }

    /// Adds a string field.
    pub fn text(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_string(&mut self.out, value);
        self
    }

    /// Adds an integer field.
    pub fn int(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    /// Adds a number field (`null` when not finite), three decimals.
    pub fn num(mut self, key: &str, value: f64) -> Self {
        self.key(key);
        push_number(&mut self.out, value);
        self
    }

    /// Adds an array of numbers, written as [`JsonLine::num`] writes one.
    pub fn nums(mut self, key: &str, values: &[f64]) -> Self {
        self.key(key);
        self.out.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_number(&mut self.out, *value);
        }
        self.out.push(']');
        self
    }

    /// Adds an array of integers.
    pub fn ints(mut self, key: &str, values: &[u64]) -> Self {
        self.key(key);
        self.out.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{value}");
        }
        self.out.push(']');
        self
    }

    /// Adds an array of strings, each escaped as [`JsonLine::text`] escapes one.
    pub fn texts<S: AsRef<str>>(mut self, key: &str, values: &[S]) -> Self {
        self.key(key);
        self.out.push('[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_string(&mut self.out, value.as_ref());
        }
        self.out.push(']');
        self
    }

    /// The finished line.
    pub fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

fn push_number(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value:.3}");
    } else {
        out.push_str("null");
    }
}

fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_orders_fields() {
        let line = JsonLine::new()
            .text("body", "7\n\"x\"\u{1}")
            .int("n", 3)
            .num("r", f64::NAN)
            .nums("v", &[1.0, f64::INFINITY, 2.5])
            .finish();
        assert_eq!(
            line,
            r#"{"body":"7\n\"x\"\u0001","n":3,"r":null,"v":[1.000,null,2.500]}"#
        );
        assert_eq!(JsonLine::new().finish(), "{}");
        let arrays = JsonLine::new()
            .ints("i", &[1, 2])
            .texts("t", &["HIT", "a\"b", ""])
            .ints("e", &[])
            .texts::<&str>("f", &[])
            .finish();
        assert_eq!(arrays, r#"{"i":[1,2],"t":["HIT","a\"b",""],"e":[],"f":[]}"#);
    }
}
