//! Which binaries the skills need: the YAML frontmatter of every `SKILL.md` one directory below
//! each skill root declares `metadata: {"openclaw": {"requires": {"bins": [...], "anyBins": [...]}}}`.
//! OpenClaw writes `metadata` as single-line JSON, which YAML reads as a flow map; some skills
//! quote it, so a JSON string is accepted too. A broken file is reported and skipped, never fatal:
//! one bad skill must not hide what the others need.
use std::path::{Path, PathBuf};

use serde_json::Value;

/// SKILL.md files are small; anything bigger is not a skill and is not read whole.
const MAX_SKILL_FILE: u64 = 1024 * 1024;
/// Manifest keys under `metadata`: OpenClaw's, then the names it had before the rename.
const MANIFEST_KEYS: [&str; 2] = ["openclaw", "clawdbot"];

/// One skill with binary requirements.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    pub name: String,
    pub file: PathBuf,
    /// All of these must be on PATH.
    pub bins: Vec<String>,
    /// One of these is enough.
    pub any_bins: Vec<String>,
    /// `os` restriction of the manifest; empty means every OS.
    pub os: Vec<String>,
}

impl Skill {
    /// OpenClaw does not load a skill restricted to other systems, so its binaries don't matter.
    pub fn applies_to_linux(&self) -> bool {
        self.os.is_empty() || self.os.iter().any(|o| o == "linux")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SkillProblem {
    pub file: PathBuf,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkillScan {
    pub skills: Vec<Skill>,
    pub problems: Vec<SkillProblem>,
}

/// Where OpenClaw looks for skills: the repository's bundled ones, the managed ones in the state
/// dir, and the workspace's.
pub fn skill_roots(repo: &Path, home: &Path) -> Vec<PathBuf> {
    let state = home.join(".openclaw");
    vec![
        repo.join("skills"),
        state.join("skills"),
        state.join("workspace").join("skills"),
    ]
}

/// Reads `<root>/*/SKILL.md` for every root. Missing roots are normal (not every install has a
/// workspace); unreadable ones are reported.
pub fn scan(roots: &[PathBuf]) -> SkillScan {
    let mut out = SkillScan::default();
    for root in roots {
        let entries = match std::fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.problems.push(SkillProblem {
                    file: root.clone(),
                    error: format!("cannot list the skills directory: {e}"),
                });
                continue;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let file = dir.join("SKILL.md");
            match read_skill(&file, &dir) {
                Ok(Some(skill)) => out.skills.push(skill),
                Ok(None) => {}
                Err(error) => out.problems.push(SkillProblem {
                    file,
                    error: error.to_string(),
                }),
            }
        }
    }
    out
}

/// Why a SKILL.md is skipped; reported beside the results, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("a symbolic link: SKILL.md must be a regular file")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than the {0} bytes a SKILL.md may have")]
    TooLarge(u64),
    #[error("cannot read: {0}")]
    Read(crate::untrusted::UntrustedReadError),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("the frontmatter opened by `---` on line 1 is never closed: add a line `---` after it")]
    Unclosed,
    #[error("frontmatter is not valid YAML: {0}")]
    Yaml(String),
    #[error("frontmatter must be a map of keys (name, description, metadata…), found {0}")]
    NotAMap(&'static str),
    #[error("metadata must be a JSON object or a YAML map, found {0}")]
    Metadata(&'static str),
    #[error("metadata must be a JSON object, found {0}")]
    MetadataJson(&'static str),
    #[error("metadata is a string but not valid JSON: {0}")]
    MetadataString(serde_json::Error),
    #[error("metadata.{key} must be an object, found {found}")]
    Manifest {
        key: &'static str,
        found: &'static str,
    },
    #[error(
        "metadata.{key}.requires must be an object like {{\"bins\": [\"gog\"]}}, found {found}"
    )]
    Requires {
        key: &'static str,
        found: &'static str,
    },
    #[error("{key} must be a list of strings, found {found} in it")]
    ListItem { key: String, found: &'static str },
    #[error("{key} must be a list of strings like [\"gog\"], found {found}")]
    List { key: String, found: &'static str },
    #[error("{key}: {name:?} {why}")]
    BadName {
        key: String,
        name: String,
        why: &'static str,
    },
}

fn read_skill(file: &Path, dir: &Path) -> Result<Option<Skill>, SkillError> {
    use crate::untrusted::{UntrustedReadError as U, read_bounded};
    // Bounded and non-blocking: a SKILL.md symlinked to /dev/zero or made a FIFO must not hang
    // verify or fill the agent's memory.
    let bytes = match read_bounded(file, MAX_SKILL_FILE) {
        Ok(b) => b,
        Err(U::NotFound { .. }) => return Ok(None),
        Err(U::Symlink { .. }) => return Err(SkillError::Symlink),
        Err(U::NotRegular { .. }) => return Err(SkillError::NotRegular),
        Err(U::TooLarge { max, .. }) => return Err(SkillError::TooLarge(max)),
        Err(e) => return Err(SkillError::Read(e)),
    };
    let text = String::from_utf8(bytes).map_err(|_| SkillError::NotUtf8)?;
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_skill(&text, &dir_name, file)
}

/// Parses one SKILL.md. `Ok(None)`: a valid skill that needs no binaries (or has no frontmatter,
/// which OpenClaw allows).
pub fn parse_skill(text: &str, dir_name: &str, file: &Path) -> Result<Option<Skill>, SkillError> {
    let Some(yaml) = frontmatter(text)? else {
        return Ok(None);
    };
    let doc: Value =
        serde_saphyr::from_str(yaml).map_err(|e| SkillError::Yaml(one_line(&e.to_string())))?;
    let doc = match doc {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        other => return Err(SkillError::NotAMap(kind(&other))),
    };
    let name = match doc.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.trim().to_owned(),
        _ => dir_name.to_owned(),
    };
    let metadata = match doc.get("metadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => parse_metadata_string(s)?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => return Err(SkillError::Metadata(kind(other))),
    };
    let Some(needs) = manifest_requirements(&metadata)? else {
        return Ok(None);
    };
    Ok(Some(Skill {
        name,
        file: file.to_owned(),
        bins: needs.bins,
        any_bins: needs.any_bins,
        os: needs.os,
    }))
}

/// What a manifest under `metadata` requires.
struct Needs {
    bins: Vec<String>,
    any_bins: Vec<String>,
    os: Vec<String>,
}

/// The manifest's `os` and `requires`; `None` when it requires no binary.
fn manifest_requirements(metadata: &Value) -> Result<Option<Needs>, SkillError> {
    let Some((key, manifest)) = MANIFEST_KEYS
        .iter()
        .find_map(|k| metadata.get(*k).map(|m| (*k, m)))
    else {
        return Ok(None);
    };
    let manifest = match manifest {
        Value::Null => return Ok(None),
        Value::Object(_) => manifest,
        other => {
            return Err(SkillError::Manifest {
                key,
                found: kind(other),
            });
        }
    };
    let os = string_list(manifest.get("os"), &format!("metadata.{key}.os"))?;
    let requires = match manifest.get("requires") {
        None | Some(Value::Null) => return Ok(None),
        Some(r @ Value::Object(_)) => r,
        Some(other) => {
            return Err(SkillError::Requires {
                key,
                found: kind(other),
            });
        }
    };
    let bins = bin_list(
        requires.get("bins"),
        &format!("metadata.{key}.requires.bins"),
    )?;
    let any_bins = bin_list(
        requires.get("anyBins"),
        &format!("metadata.{key}.requires.anyBins"),
    )?;
    if bins.is_empty() && any_bins.is_empty() {
        return Ok(None);
    }
    Ok(Some(Needs { bins, any_bins, os }))
}

/// The text between a first line `---` and the next `---` (or `...`) line.
fn frontmatter(text: &str) -> Result<Option<&str>, SkillError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.trim_end() == "---" => {}
        _ => return Ok(None),
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut offset = start;
    for line in lines {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed == "..." {
            return Ok(Some(&text[start..offset]));
        }
        offset += line.len();
    }
    Err(SkillError::Unclosed)
}

fn parse_metadata_string(s: &str) -> Result<Value, SkillError> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(SkillError::MetadataJson(kind(&other))),
        Err(json) => match serde_saphyr::from_str::<Value>(s) {
            // Lenient writers (trailing commas, single quotes) still read as a YAML flow map.
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(SkillError::MetadataString(json)),
        },
    }
}

fn string_list(value: Option<&Value>, key: &str) -> Result<Vec<String>, SkillError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.trim().to_owned()),
                other => Err(SkillError::ListItem {
                    key: key.to_owned(),
                    found: kind(other),
                }),
            })
            .collect(),
        Some(other) => Err(SkillError::List {
            key: key.to_owned(),
            found: kind(other),
        }),
    }
}

fn bin_list(value: Option<&Value>, key: &str) -> Result<Vec<String>, SkillError> {
    let mut names = string_list(value, key)?;
    for name in &names {
        check_name(name).map_err(|why| SkillError::BadName {
            key: key.to_owned(),
            name: name.clone(),
            why,
        })?;
    }
    names.dedup();
    Ok(names)
}

/// A command name as PATH lookup takes it: a file name, not a path.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.contains('/') {
        Err("contains '/': name a command as found on PATH, e.g. \"gog\"")
    } else if name == "." || name == ".." {
        Err("is not a command name")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("contains whitespace or control characters")
    } else if name.len() > 255 {
        Err("is longer than 255 bytes")
    } else {
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Skill>, SkillError> {
        parse_skill(text, "dir", Path::new("skills/dir/SKILL.md"))
    }

    /// What the operator reads for a SKILL.md that does not parse.
    fn parse_error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn flow_map_metadata_as_openclaw_writes_it() {
        let s = parse(
            "---\nname: gog\ndescription: Google\nmetadata: {\"openclaw\": {\"emoji\": \"📧\", \"requires\": {\"bins\": [\"gog\"]}}}\n---\n# Gog\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.name, "gog");
        assert_eq!(s.bins, ["gog"]);
        assert!(s.any_bins.is_empty());
    }

    #[test]
    fn json_string_metadata_and_any_bins() {
        let s = parse(
            "---\nmetadata: '{\"openclaw\":{\"requires\":{\"anyBins\":[\"claude\",\"codex\"]}}}'\n---\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.name, "dir");
        assert_eq!(s.any_bins, ["claude", "codex"]);
    }

    #[test]
    fn yaml_block_metadata_and_legacy_key() {
        let s = parse(
            "---\r\nname: x\r\nmetadata:\r\n  clawdbot:\r\n    requires:\r\n      bins:\r\n        - jq\r\n---\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.bins, ["jq"]);
    }

    #[test]
    fn no_frontmatter_or_no_requirements_is_fine() {
        assert_eq!(parse("# just markdown\n").unwrap(), None);
        assert_eq!(parse("---\nname: a\n---\n").unwrap(), None);
        assert_eq!(
            parse("---\nmetadata: {\"openclaw\": {\"emoji\": \"x\"}}\n---\n").unwrap(),
            None
        );
    }

    #[test]
    fn malformed_frontmatter_is_explained() {
        let unclosed = parse_error("---\nname: a\n");
        assert!(unclosed.contains("never closed"), "{unclosed}");
        let bad_yaml = parse_error("---\nname: [unclosed\n---\n");
        assert!(bad_yaml.contains("not valid YAML"), "{bad_yaml}");
        let bad_json = parse_error("---\nmetadata: '{\"openclaw\": '\n---\n");
        assert!(bad_json.contains("not valid JSON"), "{bad_json}");
        let bad_bins = parse_error(
            "---\nmetadata: {\"openclaw\": {\"requires\": {\"bins\": \"gog\"}}}\n---\n",
        );
        assert!(
            bad_bins.contains("requires.bins must be a list"),
            "{bad_bins}"
        );
        let path = parse_error(
            "---\nmetadata: {\"openclaw\": {\"requires\": {\"bins\": [\"/usr/bin/x\"]}}}\n---\n",
        );
        assert!(path.contains("contains '/'"), "{path}");
    }

    #[test]
    fn os_restriction() {
        let s = parse(
            "---\nmetadata: {\"openclaw\": {\"os\": [\"darwin\"], \"requires\": {\"bins\": [\"osascript\"]}}}\n---\n",
        )
        .unwrap()
        .unwrap();
        assert!(!s.applies_to_linux());
    }

    #[test]
    fn scan_reports_per_file_and_skips_missing_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("skills");
        for (dir, text) in [
            (
                "good",
                "---\nmetadata: {\"openclaw\": {\"requires\": {\"bins\": [\"gog\"]}}}\n---\n",
            ),
            ("bad", "---\nmetadata: [1\n---\n"),
            ("plain", "no frontmatter"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join("SKILL.md"), text).unwrap();
        }
        std::fs::create_dir_all(root.join("empty")).unwrap();
        let scan = scan(&[root.clone(), tmp.path().join("absent")]);
        assert_eq!(scan.skills.len(), 1);
        assert_eq!(scan.skills[0].name, "good");
        assert_eq!(scan.problems.len(), 1);
        assert_eq!(scan.problems[0].file, root.join("bad").join("SKILL.md"));
    }
}
