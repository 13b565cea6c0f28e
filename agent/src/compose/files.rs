//! File-based `configs` and `secrets`: top-level `name: {file: PATH}` entries, and a service's
//! short (`- name`) or long (`- {source, target}`) references, which become read-only bind
//! mounts at `/<name>` (configs) or `/run/secrets/<name>` (secrets), as docker compose does.
//! The files come from the checkout, which is untrusted: each must resolve, symlinks followed,
//! to a regular file inside it.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::{
    ComposeError,
    model::{FileKind, FileMount},
    parse::{Loc, normalize},
    top::{invalid as top_invalid, unsupported},
    values,
};

/// Top-level `configs:` or `secrets:` (`kind`), merged into `out`; paths relative to `dir`.
pub fn definitions(
    file: &Path,
    dir: &Path,
    kind: FileKind,
    value: &Value,
    out: &mut BTreeMap<String, PathBuf>,
) -> Result<(), ComposeError> {
    let top = kind.key();
    let Value::Object(map) = value else {
        return Err(top_invalid(file, top.into(), "must be a mapping of names"));
    };
    for (name, spec) in map {
        let Value::Object(fields) = spec else {
            return Err(top_invalid(
                file,
                format!("{top}.{name}"),
                "must be a mapping with `file:`",
            ));
        };
        let mut source = None;
        for (k, v) in fields {
            let key = format!("{top}.{name}.{k}");
            match k.as_str() {
                "file" => {
                    let text = values::scalar_string(v)
                        .ok_or_else(|| top_invalid(file, key.clone(), "must be a path"))?;
                    source = Some(inside_checkout(file, dir, &key, &text)?);
                }
                x if x.starts_with("x-") => {}
                _ => return Err(unsupported(file, &key)),
            }
        }
        let source = source.ok_or_else(|| {
            top_invalid(
                file,
                format!("{top}.{name}"),
                "needs `file:` (clawops supports file-based configs and secrets only)",
            )
        })?;
        out.insert(name.clone(), source);
    }
    Ok(())
}

/// The real path of `text` (relative to `dir`), which must be a regular file in the checkout.
fn inside_checkout(
    file: &Path,
    dir: &Path,
    key: &str,
    text: &str,
) -> Result<PathBuf, ComposeError> {
    let path = normalize(&dir.join(text));
    let real = std::fs::canonicalize(&path).map_err(|_| ComposeError::Invalid {
        file: file.to_owned(),
        service: None,
        key: key.to_owned(),
        message: format!("{} does not exist", path.display()),
    })?;
    let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    if !real.starts_with(&root) {
        return Err(ComposeError::FileOutside {
            file: file.to_owned(),
            key: key.to_owned(),
            path,
        });
    }
    if !real.is_file() {
        return Err(top_invalid(
            file,
            key.to_owned(),
            &format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(real)
}

/// A service's `configs:` or `secrets:` references; the files are filled in by
/// [`resolve`] once the project's definitions are known.
pub fn references(
    loc: &Loc<'_>,
    kind: FileKind,
    v: &Value,
) -> Result<Vec<FileMount>, ComposeError> {
    let key = kind.key();
    let Value::Array(items) = v else {
        return Err(loc.invalid(key, "must be a list"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(fields) => long_reference(loc, kind, fields),
            other => {
                let source = values::scalar_string(other)
                    .ok_or_else(|| loc.invalid(key, format!("{other} is not a name")))?;
                Ok(mount(kind, source, None))
            }
        })
        .collect()
}

fn long_reference(
    loc: &Loc<'_>,
    kind: FileKind,
    fields: &serde_json::Map<String, Value>,
) -> Result<FileMount, ComposeError> {
    let (mut source, mut target) = (None, None);
    for (k, v) in fields {
        let key = format!("{}.{k}", kind.key());
        let text = || values::scalar_string(v).ok_or_else(|| loc.invalid(&key, "must be a string"));
        match k.as_str() {
            "source" => source = Some(text()?),
            "target" => target = Some(text()?),
            x if x.starts_with("x-") => {}
            // uid, gid and mode cannot apply to a bind mount: refused rather than ignored.
            _ => return Err(loc.unsupported(&key)),
        }
    }
    let source = source.ok_or_else(|| loc.invalid(kind.key(), "an entry has no `source`"))?;
    Ok(mount(kind, source, target))
}

/// compose's targets: configs at `/<name>`, secrets at `/run/secrets/<name>`; a relative
/// target goes under that directory.
fn mount(kind: FileKind, source: String, target: Option<String>) -> FileMount {
    let base = match kind {
        FileKind::Config => "/",
        FileKind::Secret => "/run/secrets/",
    };
    let target = match target {
        Some(t) if t.starts_with('/') => t,
        Some(t) => format!("{base}{t}"),
        None => format!("{base}{source}"),
    };
    FileMount {
        source,
        target,
        file: PathBuf::new(),
    }
}

/// Fills in each reference's file from the project's definitions; an undefined name is an
/// error naming it.
pub fn resolve(
    first_file: &Path,
    service: &str,
    kind: FileKind,
    mounts: &mut [FileMount],
    defined: &BTreeMap<String, PathBuf>,
) -> Result<(), ComposeError> {
    for m in mounts {
        let Some(file) = defined.get(&m.source) else {
            return Err(ComposeError::Invalid {
                file: first_file.to_owned(),
                service: Some(service.to_owned()),
                key: kind.key().to_owned(),
                message: format!(
                    "refers to undefined {} {:?}: declare it under the top-level `{}:` key with `file:`",
                    kind.singular(),
                    m.source,
                    kind.key()
                ),
            });
        };
        m.file = file.clone();
    }
    Ok(())
}
