//! `.env` and `env_file` parsing with docker compose's rules (compose-go `dotenv`):
//! `KEY=value`, optional `export `, `#` comments (inline only after whitespace in unquoted
//! values), single quotes literal, double quotes with `\n \t \\ \" \$` escapes, both may span
//! lines; unquoted and double-quoted values are interpolated (`${V:-d}` …) from the lookup and
//! the keys defined earlier in the file; a bare `KEY` takes its value from the lookup, if set.
//!
//! Errors name the line and, once it is known to be one, the variable: never text from the
//! file, which may be a secret (an `env_file` pointing at a token file gives "line 1: …").

use super::interpolate::{InterpolateError, interpolate};

/// A problem on a line of an env file; never quotes the file's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct DotenvError {
    pub line: usize,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    // Not echoed: it may be the first line of a token file rather than a name.
    #[error(
        "not a valid variable name (letters, digits, `_`, `.`, `-`; not starting with a digit)"
    )]
    InvalidKey,
    // Not `{key}`: without `=` it is not known to be a name (`tok3n rest` …).
    #[error("expected `=` after the variable name")]
    ExpectedEquals,
    #[error("{key}: invalid interpolation format (write a literal $ as $$)")]
    Interpolation { key: String },
    #[error("{key}: required variable {name} is missing a value")]
    Required { key: String, name: String },
    #[error("unterminated {quote} quote in the value of {key}")]
    Unterminated { key: String, quote: char },
    #[error("unexpected text after the quoted value of {key}")]
    TextAfterQuote { key: String },
}

/// The text not parsed yet and the number of its first line.
struct Cursor<'t> {
    rest: &'t str,
    line: usize,
}

impl<'t> Cursor<'t> {
    fn next_line(&mut self) -> Option<&'t str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, after) = split_line(self.rest);
        self.rest = after;
        self.line += 1;
        Some(line)
    }
}

/// Parses `text`; `lookup` gives the variables that take precedence over the file (the process
/// environment), for interpolation and for bare keys. Returns the pairs in file order (a later
/// duplicate replaces the earlier value in place).
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut cursor = Cursor {
        rest: text.strip_prefix('\u{feff}').unwrap_or(text),
        line: 0,
    };
    while let Some(line) = cursor.next_line() {
        let start_line = cursor.line;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        entry(trimmed, &mut cursor, lookup, &mut vars).map_err(|problem| DotenvError {
            line: start_line,
            problem,
        })?;
    }
    Ok(vars)
}

/// One `KEY=value` (or bare `KEY`) starting on `line`; a quoted value may take more lines.
fn entry(
    line: &str,
    cursor: &mut Cursor<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
    vars: &mut Vec<(String, String)>,
) -> Result<(), Problem> {
    let body = line
        .strip_prefix("export ")
        .map(str::trim_start)
        .unwrap_or(line);
    let key_end = body.find(['=', ' ', '\t']).unwrap_or(body.len());
    let key = &body[..key_end];
    validate_key(key)?;
    let after_key = body[key_end..].trim_start_matches([' ', '\t']);
    let known = |k: &str| lookup(k).or_else(|| get(vars, k));
    let Some(raw) = after_key.strip_prefix('=') else {
        if after_key.is_empty() || after_key.starts_with('#') {
            // A bare key inherits its value from the environment, when set there.
            if let Some(v) = known(key) {
                set(vars, key, v);
            }
            return Ok(());
        }
        return Err(Problem::ExpectedEquals);
    };
    let raw = raw.trim_start_matches([' ', '\t']);
    let value = match raw.chars().next() {
        Some(q @ ('\'' | '"')) => quoted_value(key, q, raw, cursor, &known)?,
        _ => {
            let without_comment = match raw.find(" #").or_else(|| raw.find("\t#")) {
                Some(pos) => &raw[..pos],
                None if raw.starts_with('#') => "",
                None => raw,
            };
            interpolated(key, without_comment.trim_end(), &known)?
        }
    };
    set(vars, key, value);
    Ok(())
}

/// A value in `q` quotes starting at `raw`; the closing quote may be on a later line.
fn quoted_value(
    key: &str,
    q: char,
    raw: &str,
    cursor: &mut Cursor<'_>,
    known: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Problem> {
    let mut full = raw.to_owned();
    let close = loop {
        if let Some(pos) = closing_quote(&full[1..], q) {
            break pos + 1;
        }
        let Some(next) = cursor.next_line() else {
            return Err(Problem::Unterminated {
                key: key.to_owned(),
                quote: q,
            });
        };
        full.push('\n');
        full.push_str(next);
    };
    let inner = &full[1..close];
    let trailing = full[close + 1..].trim_start();
    if !(trailing.is_empty() || trailing.starts_with('#')) {
        return Err(Problem::TextAfterQuote {
            key: key.to_owned(),
        });
    }
    if q == '\'' {
        Ok(inner.to_owned())
    } else {
        interpolated(key, &unescape_double(inner), known)
    }
}

/// The interpolated value; the error holds neither the template nor the `:?` message, both
/// text from the file.
fn interpolated(
    key: &str,
    s: &str,
    known: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Problem> {
    interpolate(s, known).map(|i| i.value).map_err(|e| match e {
        InterpolateError::Invalid { .. } => Problem::Interpolation {
            key: key.to_owned(),
        },
        InterpolateError::Required { name, .. } => Problem::Required {
            key: key.to_owned(),
            name,
        },
    })
}

fn split_line(s: &str) -> (&str, &str) {
    match s.find('\n') {
        Some(i) => (s[..i].strip_suffix('\r').unwrap_or(&s[..i]), &s[i + 1..]),
        None => (s, ""),
    }
}

fn validate_key(key: &str) -> Result<(), Problem> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !key.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(Problem::InvalidKey)
    }
}

/// Position of the unescaped closing quote in `s` (which starts after the opening quote).
fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if q == '"' && escaped {
            escaped = false;
            continue;
        }
        if q == '"' && c == '\\' {
            escaped = true;
        } else if c == q {
            return Some(i);
        }
    }
    None
}

fn unescape_double(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            // `\$` keeps a literal dollar through interpolation.
            Some('$') => out.push_str("$$"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn get(vars: &[(String, String)], key: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn set(vars: &mut Vec<(String, String)>, key: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => vars.push((key.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<(String, String)> {
        parse(text, &|k| (k == "USER").then(|| "alice".to_string())).unwrap()
    }

    #[test]
    fn seed_env_file() {
        let vars = p("OPENCLAW_IMAGE=openclaw:latest\n\
             # comment\n\
             OPENCLAW_CONFIG_DIR=/home/$USER/.openclaw\n\
             OPENCLAW_WORKSPACE_DIR=${OPENCLAW_CONFIG_DIR}/workspace\n");
        assert_eq!(vars[1].1, "/home/alice/.openclaw");
        assert_eq!(vars[2].1, "/home/alice/.openclaw/workspace");
    }

    #[test]
    fn quoting_comments_and_exports() {
        let vars = p(
            "export A=1 # c\nB='x $USER # y'\nC=\"a\\nb $USER\"\nD=a#b\nE=\nF=\"multi\nline\"\nUSER\nNOPE\n",
        );
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("x $USER # y"));
        assert_eq!(get("C"), Some("a\nb alice"));
        assert_eq!(get("D"), Some("a#b"));
        assert_eq!(get("E"), Some(""));
        assert_eq!(get("F"), Some("multi\nline"));
        assert_eq!(get("USER"), Some("alice"));
        assert_eq!(get("NOPE"), None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("A=1\nB C\n", &|_| None).unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("A=\"open\n", &|_| None).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        let e = parse("1A=x\n", &|_| None).unwrap_err();
        assert!(e.to_string().contains("not a valid variable name"), "{e}");
        let e = parse("A=${B:?set B}\n", &|_| None).unwrap_err();
        assert!(e.to_string().contains("required variable B"), "{e}");
    }

    /// A token file given as an env_file: the error names the line, not the token.
    #[test]
    fn errors_never_echo_the_file() {
        let secret = "3f9a0c1d2e3f4a5b6c7d8e9f00112233";
        for text in [
            format!("{secret}\n"),
            format!("A=1\n{secret} x\n"),
            format!("TOKEN {secret}\n"),
            format!("f{secret} {secret}\n"),
            format!("A='x'{secret}\n"),
            format!("A=${{{secret}\n"),
            format!("A=${{B:?{secret}}}\n"),
            format!("A=\"{secret}\n"),
        ] {
            let e = parse(&text, &|_| None).unwrap_err();
            assert!(!e.to_string().contains("3f9a"), "{e}");
            assert!(e.to_string().starts_with("line "), "{e}");
        }
    }
}
