//! Checks on `agent.toml` values that the types alone do not constrain; each error names its key.
use std::path::Path;

use super::{Config, ConfigError};

impl Config {
    /// Checks values that the types alone do not constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.tls.is_none() {
            return Err(ConfigError::Invalid {
                key: "listen",
                message: format!(
                    "{} is not a loopback address and [tls] is not configured. The agent is meant \
                     to be reached through an SSH tunnel (`clawops --via ssh://HOST …` or \
                     `--via gcloud://VM`), so it listens on 127.0.0.1; to expose it on a network, \
                     configure [tls] cert and key",
                    self.listen
                ),
            });
        }
        self.validate_app()?;
        self.validate_readiness()?;
        if self.memory.sample_interval_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "memory.sample_interval_secs",
                message: "must be at least 1".into(),
            });
        }
        self.validate_memory()?;
        self.validate_build()?;
        self.validate_verify()?;
        self.validate_limits()?;
        self.validate_watch_and_notify()?;
        Ok(())
    }

    /// `[app]`: names git and compose need, a valid image reference.
    fn validate_app(&self) -> Result<(), ConfigError> {
        let non_empty = [
            ("app.remote", &self.app.remote),
            ("app.branch", &self.app.branch),
            ("app.service", &self.app.service),
        ];
        for (key, value) in non_empty {
            if value.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must not be empty".into(),
                });
            }
        }
        if let Some(image) = &self.app.image {
            crate::pull::PullRef::parse(image).map_err(|e| ConfigError::Invalid {
                key: "app.image",
                message: e.to_string(),
            })?;
        }
        for (key, value) in [
            ("app.remote", &self.app.remote),
            ("app.branch", &self.app.branch),
        ] {
            crate::git::validate_ref(value).map_err(|e| ConfigError::Invalid {
                key,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// `[readiness]`: a timeout, a regex that compiles, an http(s) URL.
    fn validate_readiness(&self) -> Result<(), ConfigError> {
        if self.readiness.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "readiness.timeout_secs",
                message: "must be at least 1".into(),
            });
        }
        if let Some(re) = &self.readiness.log_regex {
            regex::Regex::new(re).map_err(|e| ConfigError::Invalid {
                key: "readiness.log_regex",
                message: e.to_string(),
            })?;
        }
        if let Some(url) = &self.readiness.url
            && !url.is_empty()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "readiness.url",
                message: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        Ok(())
    }

    /// `[build]`: a timeout, at least one kept image, and its paths.
    fn validate_build(&self) -> Result<(), ConfigError> {
        if self.build.timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "build.timeout_secs",
                message: "must be at least 1".into(),
            });
        }
        if self.build.keep_images == 0 {
            return Err(ConfigError::Invalid {
                key: "build.keep_images",
                message: "must be at least 1: the previous image is what rollback starts".into(),
            });
        }
        self.validate_build_paths()
    }

    /// `[build] overlay` must be a readable regular file; `context` and `dockerfile` must stay
    /// inside the checkout (the build checks again after resolving symlinks).
    fn validate_build_paths(&self) -> Result<(), ConfigError> {
        if let Some(overlay) = &self.build.overlay {
            crate::build::overlay::check_path(overlay).map_err(|e| ConfigError::Invalid {
                key: "build.overlay",
                message: e.to_string(),
            })?;
        }
        if self.build.dockerfile.is_some() && self.build.context.is_none() {
            return Err(ConfigError::Invalid {
                key: "build.dockerfile",
                message: "only applies with [build] context: set the context too".into(),
            });
        }
        for (key, path) in [
            ("build.context", &self.build.context),
            ("build.dockerfile", &self.build.dockerfile),
        ] {
            if let Some(path) = path
                && !stays_inside(path)
            {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!(
                        "{} must be relative to the checkout and stay inside it (no leading `/`, \
                         no `..` above it)",
                        path.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// `[watch]` and `[[notify]]`. A notify URL is a secret: messages never repeat it.
    fn validate_watch_and_notify(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let w = &self.watch;
        if w.interval_secs == 0 {
            return invalid("watch.interval_secs", "must be at least 1".into());
        }
        if w.max_failures == 0 {
            return invalid("watch.max_failures", "must be at least 1".into());
        }
        if let Err(e) = w.parsed_window() {
            let key = match e {
                crate::watch::window::WindowError::UnknownZone(_) if w.timezone.is_some() => {
                    "watch.timezone"
                }
                _ => "watch.window",
            };
            return invalid(key, e.to_string());
        }
        for (i, n) in self.notify.iter().enumerate() {
            if let Err(why) = crate::notify::check_url(&n.url) {
                return invalid(
                    "notify.url",
                    format!("[[notify]] number {}: the url {why}", i + 1),
                );
            }
            if n.events.is_empty() {
                return invalid(
                    "notify.events",
                    format!(
                        "[[notify]] number {}: empty; leave the key out for every event",
                        i + 1
                    ),
                );
            }
        }
        Ok(())
    }

    /// `[limits]`: zero would refuse every request (or rotate the journal on every write).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            (
                "limits.max_requested_by_bytes",
                l.max_requested_by_bytes as u64,
            ),
            (
                "limits.max_streams_per_connection",
                l.max_streams_per_connection.into(),
            ),
            (
                "limits.max_requests_per_connection",
                l.max_requests_per_connection as u64,
            ),
            ("limits.journal_max_mb", l.journal_max_mb),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// `[verify]`: command names as PATH lookup takes them, probes with a command.
    fn validate_verify(&self) -> Result<(), ConfigError> {
        let names = (self.verify.binaries.iter().map(|n| ("verify.binaries", n)))
            .chain(self.verify.probes.keys().map(|n| ("verify.probes", n)));
        for (key, name) in names {
            crate::verify::skills::check_name(name).map_err(|why| ConfigError::Invalid {
                key,
                message: format!("{name:?} {why}"),
            })?;
        }
        if let Some((name, _)) = self.verify.probes.iter().find(|(_, argv)| argv.is_empty()) {
            return Err(ConfigError::Invalid {
                key: "verify.probes",
                message: format!("{name:?} has an empty argv: give e.g. [\"{name}\", \"version\"]"),
            });
        }
        Ok(())
    }

    /// The `[memory]` values: the ring must stay small enough for the agent's RSS budget.
    fn validate_memory(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        let samples = m.history_secs / m.sample_interval_secs;
        if m.history_secs < m.sample_interval_secs || samples > 100_000 {
            return invalid(
                "memory.history_secs",
                format!(
                    "{}s of history at one sample every {}s is {samples} samples; keep it between \
                     1 and 100000 (raise sample_interval_secs for a longer history)",
                    m.history_secs, m.sample_interval_secs
                ),
            );
        }
        if let Err(e) = crate::memory::metadata::MetadataClient::new(
            &m.metadata_url,
            std::time::Duration::from_millis(m.metadata_timeout_ms),
        ) {
            return invalid("memory.metadata_url", e.to_string());
        }
        if !(1..=10_000).contains(&m.metadata_timeout_ms) {
            return invalid(
                "memory.metadata_timeout_ms",
                "must be between 1 and 10000 (the metadata server answers in a few ms)".into(),
            );
        }
        if !(m.pressure_some_pct > 0.0 && m.pressure_some_pct <= 100.0) {
            return invalid(
                "memory.pressure_some_pct",
                format!("{} is not a percentage in (0, 100]", m.pressure_some_pct),
            );
        }
        if m.sustained_secs == 0 {
            return invalid("memory.sustained_secs", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Is `path` relative, and does it stay below its base when `..` is taken lexically?
fn stays_inside(path: &Path) -> bool {
    let mut depth = 0usize;
    for c in path.components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}
