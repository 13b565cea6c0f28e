//! `.env` and `env_file` parsing with docker compose's rules (compose-go `dotenv`):
//! `KEY=value`, optional `export `, `#` comments (inline only after whitespace in unquoted
//! values), single quotes literal, double quotes with `\n \t \\ \" \$` escapes, both may span
//! lines; unquoted and double-quoted values are interpolated (`${V:-d}` …) from the lookup and
//! the keys defined earlier in the file; a bare `KEY` takes its value from the lookup, if set.
//!
//! Errors name the line and, once it is known to be one, the variable: never text from the
//! file, which may be a secret (an `env_file` pointing at a token file gives "line 1: …").

use super::interpolate::{InterpolateError, interpolate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for DotenvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
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
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rest = text;
    let mut line_no = 1usize;
    while !rest.is_empty() {
        let (line, after) = split_line(rest);
        let start_line = line_no;
        line_no += 1;
        rest = after;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |message: String| DotenvError {
            line: start_line,
            message,
        };
        let body = trimmed
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(trimmed);
        let key_end = body.find(['=', ' ', '\t']).unwrap_or(body.len());
        let key = &body[..key_end];
        validate_key(key).map_err(err)?;
        let after_key = body[key_end..].trim_start_matches([' ', '\t']);
        let Some(raw) = after_key.strip_prefix('=') else {
            if after_key.is_empty() || after_key.starts_with('#') {
                // A bare key inherits its value from the environment, when set there.
                let known = |k: &str| lookup(k).or_else(|| get(&vars, k));
                if let Some(v) = known(key) {
                    set(&mut vars, key, v);
                }
                continue;
            }
            // Not `{key}`: without `=` it is not known to be a name (`tok3n rest` …).
            return Err(err("expected `=` after the variable name".into()));
        };
        let raw = raw.trim_start_matches([' ', '\t']);
        let known = |k: &str| lookup(k).or_else(|| get(&vars, k));
        let interp = |s: &str| -> Result<String, DotenvError> {
            interpolate(s, &known)
                .map(|i| i.value)
                .map_err(|e: InterpolateError| err(format!("{key}: {}", redacted(&e))))
        };
        let value = match raw.chars().next() {
            Some(q @ ('\'' | '"')) => {
                // The closing quote may be on a later line.
                let mut full = raw.to_owned();
                let mut extra = rest;
                let close = loop {
                    if let Some(pos) = closing_quote(&full[1..], q) {
                        break pos + 1;
                    }
                    if extra.is_empty() {
                        return Err(err(format!("unterminated {q} quote in the value of {key}")));
                    }
                    let (next, after_next) = split_line(extra);
                    full.push('\n');
                    full.push_str(next);
                    extra = after_next;
                    line_no += 1;
                };
                rest = extra;
                let inner = &full[1..close];
                let trailing = full[close + 1..].trim_start();
                if !(trailing.is_empty() || trailing.starts_with('#')) {
                    return Err(err(format!(
                        "unexpected text after the quoted value of {key}"
                    )));
                }
                if q == '\'' {
                    inner.to_owned()
                } else {
                    interp(&unescape_double(inner))?
                }
            }
            _ => {
                let without_comment = match raw.find(" #").or_else(|| raw.find("\t#")) {
                    Some(pos) => &raw[..pos],
                    None if raw.starts_with('#') => "",
                    None => raw,
                };
                interp(without_comment.trim_end())?
            }
        };
        set(&mut vars, key, value);
    }
    Ok(vars)
}

fn split_line(s: &str) -> (&str, &str) {
    match s.find('\n') {
        Some(i) => (s[..i].strip_suffix('\r').unwrap_or(&s[..i]), &s[i + 1..]),
        None => (s, ""),
    }
}

/// The interpolation error without the template or the `:?` message, both text from the file.
fn redacted(e: &InterpolateError) -> String {
    match e {
        InterpolateError::Invalid { .. } => {
            "invalid interpolation format (write a literal $ as $$)".into()
        }
        InterpolateError::Required { name, .. } => {
            format!("required variable {name} is missing a value")
        }
    }
}

fn validate_key(key: &str) -> Result<(), String> {
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !key.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        // Not echoed: it may be the first line of a token file rather than a name.
        Err(
            "not a valid variable name (letters, digits, `_`, `.`, `-`; not starting with a digit)"
                .into(),
        )
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
        assert!(e.message.contains("unterminated"), "{e}");
        let e = parse("1A=x\n", &|_| None).unwrap_err();
        assert!(e.message.contains("not a valid variable name"), "{e}");
        let e = parse("A=${B:?set B}\n", &|_| None).unwrap_err();
        assert!(e.message.contains("required variable B"), "{e}");
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
