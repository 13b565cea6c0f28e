//! A throwaway home for the `clawops` binary in tests: its own HOME and XDG_CONFIG_HOME (so
//! config.toml and tokens/ live in a tempdir) and none of the CLAWOPS_* variables of the
//! environment the tests run in.
#![allow(dead_code)]
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tempfile::TempDir;
use testkit::{agent::client_binary, sshd::Sshd};

pub struct Home {
    dir: TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_CONFIG_HOME/clawops`
    pub fn clawops_dir(&self) -> PathBuf {
        self.dir.path().join("xdg/clawops")
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.clawops_dir().join("config.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(client_binary());
        cmd.args(args)
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"));
        for var in [
            "CLAWOPS_TOKEN",
            "CLAWOPS_VIA",
            "CLAWOPS_ADDR",
            "CLAWOPS_TARGET",
            "CLAWOPS_CONFIG",
            "CLAWOPS_SSH",
            "CLAWOPS_GCLOUD",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().expect("run clawops"))
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// A TOML array of the fixture sshd's client options (its key, no host-key checks).
pub fn ssh_options_toml(sshd: &Sshd) -> String {
    let quoted: Vec<String> = sshd
        .client_options()
        .iter()
        .map(|o| format!("{o:?}"))
        .collect();
    format!("[{}]", quoted.join(", "))
}
