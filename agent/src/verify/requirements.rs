//! Which names to check and who needs them: the request, `[verify] binaries`, and the skills.
//! A skill's `bins` are each required; of its `anyBins` one usable binary is enough, so the
//! others are reported but not required.
use std::collections::HashMap;

use super::skills::Skill;

pub const BY_REQUEST: &str = "request";
pub const BY_CONFIG: &str = "config";

#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub name: String,
    /// Needed no matter what else is found.
    pub hard: bool,
    pub required_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AnyGroup {
    pub skill: String,
    pub bins: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// In first-mentioned order, each name once.
    pub wanted: Vec<Wanted>,
    pub groups: Vec<AnyGroup>,
    pub notes: Vec<String>,
}

impl Requirements {
    pub fn gather(request: &[String], config: &[String], skills: &[Skill]) -> Self {
        let mut req = Self::default();
        for name in request {
            req.add(name, BY_REQUEST, true);
        }
        for name in config {
            req.add(name, BY_CONFIG, true);
        }
        for skill in skills {
            if !skill.applies_to_linux() {
                req.notes.push(format!(
                    "skill {} ({}) is only for {}: its binaries are not checked",
                    skill.name,
                    skill.file.display(),
                    skill.os.join(", ")
                ));
                continue;
            }
            for name in &skill.bins {
                req.add(name, &skill.name, true);
            }
            if !skill.any_bins.is_empty() {
                let by = format!("{} (one of {})", skill.name, skill.any_bins.join(", "));
                for name in &skill.any_bins {
                    req.add(name, &by, false);
                }
                req.groups.push(AnyGroup {
                    skill: skill.name.clone(),
                    bins: skill.any_bins.clone(),
                });
            }
        }
        req
    }

    fn add(&mut self, name: &str, by: &str, hard: bool) {
        match self.wanted.iter_mut().find(|w| w.name == name) {
            Some(w) => {
                w.hard |= hard;
                if !w.required_by.iter().any(|b| b == by) {
                    w.required_by.push(by.to_owned());
                }
            }
            None => self.wanted.push(Wanted {
                name: name.to_owned(),
                hard,
                required_by: vec![by.to_owned()],
            }),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.wanted.iter().map(|w| w.name.as_str())
    }

    /// Which names are required, given which are usable: hard requirements always, and every
    /// alternative of an `anyBins` group that has no usable member (so the failure shows).
    pub fn required(&self, usable: &HashMap<String, bool>) -> HashMap<String, bool> {
        let is_usable = |n: &str| usable.get(n).copied().unwrap_or(false);
        let mut out: HashMap<String, bool> = self
            .wanted
            .iter()
            .map(|w| (w.name.clone(), w.hard))
            .collect();
        for group in &self.groups {
            if !group.bins.iter().any(|b| is_usable(b)) {
                for b in &group.bins {
                    out.insert(b.clone(), true);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn skill(name: &str, bins: &[&str], any: &[&str]) -> Skill {
        Skill {
            name: name.into(),
            file: PathBuf::from(format!("skills/{name}/SKILL.md")),
            bins: bins.iter().map(|s| s.to_string()).collect(),
            any_bins: any.iter().map(|s| s.to_string()).collect(),
            os: vec![],
        }
    }

    #[test]
    fn merges_sources_in_order() {
        let req = Requirements::gather(
            &["gog".into()],
            &["wacli".into(), "gog".into()],
            &[
                skill("gmail", &["gog"], &[]),
                skill("code", &[], &["claude", "codex"]),
            ],
        );
        let names: Vec<_> = req.names().collect();
        assert_eq!(names, ["gog", "wacli", "claude", "codex"]);
        assert_eq!(req.wanted[0].required_by, ["request", "config", "gmail"]);
        assert_eq!(req.wanted[2].required_by, ["code (one of claude, codex)"]);
    }

    #[test]
    fn any_bins_one_is_enough() {
        let req = Requirements::gather(&[], &[], &[skill("code", &[], &["claude", "codex"])]);
        let some = HashMap::from([("claude".to_string(), false), ("codex".to_string(), true)]);
        let r = req.required(&some);
        assert!(!r["claude"] && !r["codex"]);
        let none = HashMap::from([("claude".to_string(), false), ("codex".to_string(), false)]);
        let r = req.required(&none);
        assert!(r["claude"] && r["codex"]);
    }

    #[test]
    fn other_os_skills_are_noted_not_checked() {
        let mut mac = skill("notes", &["osascript"], &[]);
        mac.os = vec!["darwin".into()];
        let req = Requirements::gather(&[], &[], &[mac]);
        assert!(req.wanted.is_empty());
        assert!(req.notes[0].contains("only for darwin"));
    }
}
