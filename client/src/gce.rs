//! A GCE VM as `gcloud compute instances` manages it: the commands that stop, resize and start
//! it, and the machine type names they accept.
use crate::target::gcloud_program;

/// A GCE VM as `gcloud compute instances` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceInstance {
    pub vm: String,
    pub zone: Option<String>,
    pub project: Option<String>,
}

/// What `gcloud compute instances` is asked to do to a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceAction {
    Stop,
    /// The VM must be stopped; the type is checked by [`valid_machine_type`] first.
    SetMachineType(String),
    Start,
}

impl GceInstance {
    /// `gcloud compute instances stop|set-machine-type|start VM [--machine-type T] --zone Z
    /// [--project P] --quiet`.
    pub fn command(&self, action: &InstanceAction) -> (String, Vec<String>) {
        let verb = match action {
            InstanceAction::Stop => "stop",
            InstanceAction::SetMachineType(_) => "set-machine-type",
            InstanceAction::Start => "start",
        };
        let mut args: Vec<String> = vec![
            "compute".into(),
            "instances".into(),
            verb.into(),
            self.vm.clone(),
        ];
        if let InstanceAction::SetMachineType(machine_type) = action {
            args.push("--machine-type".into());
            args.push(machine_type.clone());
        }
        if let Some(zone) = &self.zone {
            args.push("--zone".into());
            args.push(zone.clone());
        }
        if let Some(project) = &self.project {
            args.push("--project".into());
            args.push(project.clone());
        }
        // Without --quiet a missing default would turn into a prompt a CI job never answers.
        args.push("--quiet".into());
        (gcloud_program(), args)
    }
}

/// A GCE machine type name as gcloud takes it: predefined (`e2-small`, `n2-standard-4`) or
/// custom (`e2-custom-2-4096`, `n2-custom-4-8192-ext`): lowercase words joined by `-`, starting
/// with a letter; at most 63 characters like every GCE resource name.
pub fn valid_machine_type(name: &str) -> bool {
    let mut words = name.split('-');
    let first_ok = words
        .next()
        .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_lowercase()));
    name.len() <= 63
        && first_ok
        && name.contains('-')
        && name.split('-').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    #[test]
    fn gce_instance_commands() {
        let t = Target::parse_via("gcloud://gw?zone=z1&project=p1").unwrap();
        let vm = t.gce_instance().unwrap();
        let (prog, args) = vm.command(&InstanceAction::SetMachineType("e2-small".into()));
        assert_eq!(prog, "gcloud");
        assert_eq!(
            args,
            [
                "compute",
                "instances",
                "set-machine-type",
                "gw",
                "--machine-type",
                "e2-small",
                "--zone",
                "z1",
                "--project",
                "p1",
                "--quiet"
            ]
        );
        let (_, args) = vm.command(&InstanceAction::Stop);
        assert_eq!(&args[..4], ["compute", "instances", "stop", "gw"]);
        assert!(
            Target::parse_via("ssh://vm")
                .unwrap()
                .gce_instance()
                .is_none()
        );
    }

    #[test]
    fn machine_type_syntax() {
        for good in [
            "e2-small",
            "e2-standard-2",
            "n2-custom-4-8192-ext",
            "e2-bogus",
        ] {
            assert!(valid_machine_type(good), "{good}");
        }
        for bad in [
            "",
            "e2",
            "E2-small",
            "e2_small",
            "-e2",
            "e2-",
            "e2--small",
            "2e-small",
            "e2 small",
            "e2-small;id",
            "--zone=x",
        ] {
            assert!(!valid_machine_type(bad), "{bad}");
        }
        assert!(!valid_machine_type(&format!("e2-{}", "a".repeat(61))));
    }
}
