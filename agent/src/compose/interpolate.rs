//! Variable interpolation with docker compose's rules (compose-go `template`):
//! `$$` → `$`; `$NAME` and `${NAME}`; `${NAME:-default}` (unset or empty), `${NAME-default}`
//! (unset); `${NAME:?message}` / `${NAME?message}` (error); `${NAME:+alt}` / `${NAME+alt}`
//! (alternative when set). Defaults and messages are interpolated themselves, so defaults nest
//! (`${A:-${B:-x}}`). A `$` not followed by a name, `{` or `$` stays literal, as in compose.
//! Unset variables without a default become empty and are reported, as compose warns.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolateError {
    /// `${…}` that is not a valid substitution (bad name, unclosed brace, unknown operator).
    Invalid { template: String },
    /// `${NAME:?message}` or `${NAME?message}` with NAME missing.
    Required { name: String, message: String },
}

impl std::fmt::Display for InterpolateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolateError::Invalid { template } => {
                write!(
                    f,
                    "invalid interpolation format {template:?} (write a literal $ as $$)"
                )
            }
            InterpolateError::Required { name, message } if message.is_empty() => {
                write!(f, "required variable {name} is missing a value")
            }
            InterpolateError::Required { name, message } => {
                write!(f, "required variable {name} is missing a value: {message}")
            }
        }
    }
}

/// Result of interpolating one string: the value and the variables that were not set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolated {
    pub value: String,
    pub unset: Vec<String>,
}

/// Interpolates `input`, looking variables up with `lookup`.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    let mut out = Interpolated::default();
    substitute(input, lookup, &mut out, 0)?;
    Ok(out)
}

/// Nesting deeper than this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 32;

fn substitute(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), InterpolateError> {
    if depth > MAX_DEPTH {
        return Err(InterpolateError::Invalid {
            template: input.to_owned(),
        });
    }
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.value.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.value.push('$');
            rest = tail;
        } else if let Some(inner_and_tail) = after.strip_prefix('{') {
            let close = closing_brace(inner_and_tail).ok_or_else(|| InterpolateError::Invalid {
                template: rest[pos..].to_owned(),
            })?;
            let inner = &inner_and_tail[..close];
            braced(inner, lookup, out, depth)?;
            rest = &inner_and_tail[close + 1..];
        } else {
            let name_len = name_length(after);
            if name_len == 0 {
                out.value.push('$');
                rest = after;
            } else {
                let name = &after[..name_len];
                match lookup(name) {
                    Some(v) => out.value.push_str(&v),
                    None => note_unset(out, name),
                }
                rest = &after[name_len..];
            }
        }
    }
    out.value.push_str(rest);
    Ok(())
}

/// Index of the `}` closing a `${`, counting nested `${` (as compose-go does).
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut open = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' => {
                open -= 1;
                if open == 0 {
                    return Some(i);
                }
            }
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                open += 1;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Length of the variable name at the start of `s` (`[_A-Za-z][_A-Za-z0-9]*`), 0 if none.
fn name_length(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn note_unset(out: &mut Interpolated, name: &str) {
    if !out.unset.iter().any(|n| n == name) {
        out.unset.push(name.to_owned());
    }
}

fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
    depth: usize,
) -> Result<(), InterpolateError> {
    let invalid = || InterpolateError::Invalid {
        template: format!("${{{inner}}}"),
    };
    let name_len = name_length(inner);
    if name_len == 0 {
        return Err(invalid());
    }
    let name = &inner[..name_len];
    let op_and_arg = &inner[name_len..];
    let value = lookup(name);
    if op_and_arg.is_empty() {
        match value {
            Some(v) => out.value.push_str(&v),
            None => note_unset(out, name),
        }
        return Ok(());
    }
    let (colon, rest) = match op_and_arg.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, op_and_arg),
    };
    let mut chars = rest.chars();
    let op = chars.next().ok_or_else(invalid)?;
    let arg = chars.as_str();
    // With a colon, an empty value counts as missing.
    let present = match &value {
        Some(v) => !(colon && v.is_empty()),
        None => false,
    };
    match op {
        '-' => {
            if present {
                out.value.push_str(value.as_deref().unwrap_or_default());
            } else {
                substitute(arg, lookup, out, depth + 1)?;
            }
        }
        '+' => {
            if present {
                substitute(arg, lookup, out, depth + 1)?;
            }
        }
        '?' => {
            if present {
                out.value.push_str(value.as_deref().unwrap_or_default());
            } else {
                let mut message = Interpolated::default();
                substitute(arg, lookup, &mut message, depth + 1)?;
                return Err(InterpolateError::Required {
                    name: name.to_owned(),
                    message: message.value,
                });
            }
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run(input: &str) -> Result<String, InterpolateError> {
        let env: HashMap<&str, &str> = HashMap::from([("SET", "value"), ("EMPTY", "")]);
        interpolate(input, &|k| env.get(k).map(|v| v.to_string())).map(|i| i.value)
    }

    #[test]
    fn basic_forms() {
        assert_eq!(run("a ${SET} $SET b").unwrap(), "a value value b");
        assert_eq!(run("$$SET").unwrap(), "$SET");
        assert_eq!(run("cost $5").unwrap(), "cost $5");
        assert_eq!(run("trailing $").unwrap(), "trailing $");
        assert_eq!(run("${UNSET}").unwrap(), "");
        assert!(run("${").is_err());
        assert!(run("${}").is_err());
        assert!(run("${1A}").is_err());
        assert!(run("${SET!x}").is_err());
    }

    #[test]
    fn unset_variables_are_reported_once() {
        let r = interpolate("${A}${A}$B", &|_| None).unwrap();
        assert_eq!(r.unset, vec!["A".to_string(), "B".to_string()]);
    }

    #[test]
    fn depth_is_bounded() {
        let mut s = String::from("x");
        for _ in 0..100 {
            s = format!("${{U:-{s}}}");
        }
        assert!(run(&s).is_err());
    }
}
