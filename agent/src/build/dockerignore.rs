//! `.dockerignore` with Docker's semantics (docker CLI `ignorefile.ReadAll` + moby
//! `patternmatcher`): Go `filepath.Match` syntax plus `**`, patterns cleaned like Go's
//! `filepath.Clean` (so `./a`, `/a` and `a/` all mean `a`), `!` exceptions, the last matching
//! pattern wins, and a pattern that matches a directory matches everything below it.
//! Docker's fast paths (exact, prefix `a/**`, suffix `**/a`) are kept because they decide a few
//! corner cases differently from the regex (e.g. `**foo` also matches `xfoo`).
use regex::Regex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(
        ".dockerignore line {line}: `!` alone is not a pattern; write the path to re-include after it (e.g. `!README.md`)"
    )]
    IllegalExclusion { line: usize },
    #[error(
        ".dockerignore line {line}: {pattern:?} is not a valid pattern: {reason}; see https://docs.docker.com/build/concepts/context/#dockerignore-files"
    )]
    BadPattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `a/**`: everything starting with the part before `**`.
    Prefix,
    /// `**/a`: everything ending with the part after `**`.
    Suffix,
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the leading `!`.
    text: String,
    exclusion: bool,
    /// Number of path components, for the single-parent check of Docker's `Matches`.
    dirs: usize,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let raw = if n == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            // Only a `#` in the first column starts a comment, as in Docker.
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let mut cleaned = if p.is_empty() {
                String::new()
            } else {
                go_clean(p)
            };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if exclusion {
                cleaned.insert(0, '!');
            }
            patterns.push((line, cleaned));
        }
        Self::from_lines(patterns)
    }

    /// Builds a matcher from patterns as Docker's `patternmatcher.New` takes them.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        Self::from_lines(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p.as_ref().to_owned()))
                .collect(),
        )
    }

    fn from_lines(lines: Vec<(usize, String)>) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::with_capacity(lines.len());
        for (line, p) in lines {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let p = go_clean(p);
            let (exclusion, text) = match p.strip_prefix('!') {
                Some("") => return Err(IgnoreError::IllegalExclusion { line }),
                Some(rest) => (true, rest.to_owned()),
                None => (false, p),
            };
            validate(&text).map_err(|reason| IgnoreError::BadPattern {
                line,
                pattern: text.clone(),
                reason,
            })?;
            let kind = compile(&text).map_err(|_| IgnoreError::BadPattern {
                line,
                pattern: text.clone(),
                reason: "it cannot be compiled",
            })?;
            patterns.push(Pattern {
                dirs: text.split('/').count(),
                text,
                exclusion,
                kind,
            });
        }
        Ok(Self { patterns })
    }

    /// Adds one pattern at the end (it wins over earlier ones), e.g. `!Dockerfile`.
    pub fn push(&mut self, pattern: &str) -> Result<(), IgnoreError> {
        let extra = Self::from_patterns(&[pattern])?;
        self.patterns.extend(extra.patterns);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is an exception (`!…`).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Is `path` (slash-separated, relative to the context) excluded? A path is also excluded
    /// when a pattern matches one of its parent directories (moby `MatchesOrParentMatches`).
    pub fn matches(&self, path: &str) -> bool {
        let parents: Vec<&str> = parent_prefixes(path);
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an already excluded path, nor an exception a kept one.
            if p.exclusion != matched {
                continue;
            }
            let hit = p.matches(path) || parents.iter().any(|parent| p.matches(parent));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Docker's older `Matches`, which checks only the parent as deep as the pattern. The docker
    /// CLI still uses it to decide whether the Dockerfile and `.dockerignore` need re-including.
    pub fn matches_single_parent(&self, path: &str) -> bool {
        let parent_dirs: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(path);
            if !hit && !parent_dirs.is_empty() && p.dirs <= parent_dirs.len() {
                hit = p.matches(&parent_dirs[..p.dirs].join("/"));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// For an excluded directory: may an exception re-include something below it? Docker walks
    /// into the directory only then (and only when the exception's text starts with `dir/`).
    pub fn exception_may_apply_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.text).starts_with(&prefix))
    }
}

/// `a/b/c` → `["a", "a/b"]`.
fn parent_prefixes(path: &str) -> Vec<&str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).collect()
}

/// Go's `filepath.Clean` on Unix: no repeated separators, no `.` elements, `..` resolved
/// lexically, no trailing slash; `""` → `"."`.
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if rooted => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The syntax errors Go's `filepath.Match` reports (it checks the whole pattern): an unclosed or
/// empty `[]` class, a class range with a missing end, `-` or `]` where a class character is
/// expected, and a trailing `\`.
fn validate(pattern: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("it ends with an unescaped `\\`");
                }
                i += 2;
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                let mut ranges = 0;
                loop {
                    match chars.get(i) {
                        None => return Err("a `[` class is not closed with `]`"),
                        Some(']') if ranges > 0 => {
                            i += 1;
                            break;
                        }
                        _ => {}
                    }
                    i = class_char(&chars, i)?;
                    if chars.get(i) == Some(&'-') {
                        i = class_char(&chars, i + 1)?;
                    }
                    ranges += 1;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// One (possibly escaped) character inside a class; returns the index after it.
fn class_char(chars: &[char], mut i: usize) -> Result<usize, &'static str> {
    match chars.get(i) {
        None => Err("a `[` class is not closed with `]`"),
        Some('-') | Some(']') => {
            Err("`-` or `]` where a class character was expected (escape it with `\\`)")
        }
        Some('\\') => {
            i += 1;
            if i >= chars.len() {
                return Err("a `[` class is not closed with `]`");
            }
            Ok(i + 1)
        }
        Some(_) => Ok(i + 1),
    }
}

/// moby patternmatcher's `compile`, with classes and escapes translated as `filepath.Match`
/// defines them (a validated pattern never has an unclosed class).
fn compile(pattern: &str) -> Result<Kind, regex::Error> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut kind = 0u8; // 0 exact, 1 prefix, 2 suffix, 3 regex
    let mut i = 0;
    let mut iteration = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is treated as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == 0 {
                        kind = 1;
                    } else {
                        re.push_str(".*");
                        kind = 3;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = 3;
                }
                if iteration == 0 {
                    kind = 2;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = 3;
            }
            '?' => {
                re.push_str("[^/]");
                kind = 3;
            }
            '\\' => {
                if let Some(&next) = chars.get(i) {
                    i += 1;
                    re.push_str(&regex::escape(&next.to_string()));
                    kind = 3;
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' => {
                let (class, next) = translate_class(&chars, i);
                re.push_str(&class);
                i = next;
                kind = 3;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        iteration += 1;
    }
    Ok(match kind {
        0 => Kind::Exact,
        1 => Kind::Prefix,
        2 => Kind::Suffix,
        _ => {
            re.push('$');
            Kind::Regex(Regex::new(&re)?)
        }
    })
}

/// A `filepath.Match` class starting after `[` → a regex class; returns it and the index after
/// the closing `]`. Every character is escaped so regex class syntax (`[`, `&&`, `--`) cannot
/// leak in.
fn translate_class(chars: &[char], mut i: usize) -> (String, usize) {
    let mut out = String::from("[");
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    while i < chars.len() {
        if chars[i] == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let (c, next) = take_class_char(chars, i);
        push_escaped_class_char(&mut out, c);
        i = next;
        if chars.get(i) == Some(&'-') && i + 1 < chars.len() {
            let (hi, next) = take_class_char(chars, i + 1);
            out.push('-');
            push_escaped_class_char(&mut out, hi);
            i = next;
        }
    }
    out.push(']');
    (out, i)
}

fn take_class_char(chars: &[char], i: usize) -> (char, usize) {
    if chars[i] == '\\' && i + 1 < chars.len() {
        (chars[i + 1], i + 2)
    } else {
        (chars[i], i + 1)
    }
}

fn push_escaped_class_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        out.push(c);
    } else {
        out.push('\\');
        out.push(c);
    }
}

#[cfg(test)]
#[path = "dockerignore_tests.rs"]
mod tests;
