//! A busybox script that plays OpenClaw's gateway: prints the ready line and serves `/healthz`.
//! Behaviour is chosen by files baked into the image, so a git commit can change it.

/// The gateway script, the same file the demo uses (modes: see its header).
pub const GATEWAY_SH: &str = include_str!("../../client/assets/gateway.sh");

/// The files of a gateway image in `mode` reporting `version`.
pub fn files(mode: &str, version: &str) -> Vec<crate::image::ImageFile> {
    use crate::image::ImageFile;
    vec![
        ImageFile::new("gateway.sh", GATEWAY_SH, 0o755),
        ImageFile::new("etc/gateway/mode", format!("{mode}\n"), 0o644),
        ImageFile::new("etc/gateway/version", format!("{version}\n"), 0o644),
    ]
}

/// CMD for the gateway images.
pub const CMD: &str = r#"["/bin/sh", "/gateway.sh"]"#;

/// The gateway's container in compose project `project`, as the demo's compose file names it.
pub fn container_name(project: &str) -> String {
    format!("{project}-openclaw-gateway-1")
}

/// The id of the gateway's container in `project` and when it started: either changes when the
/// container is recreated or restarted.
pub async fn container(project: &str) -> (String, String) {
    let docker = crate::docker::connect().await;
    let c = docker
        .inspect_container(&container_name(project), None)
        .await
        .expect("the gateway container");
    let started = c.state.and_then(|s| s.started_at);
    (c.id.expect("an id"), started.expect("a start time"))
}
