//! A busybox script that plays OpenClaw's gateway: prints the ready line and serves `/healthz`.
//! Behaviour is chosen by files baked into the image, so a git commit can change it.

/// The gateway script. Reads, at start:
/// - `GATEWAY_PORT` (default 18789) — where httpd listens inside the container;
/// - `/etc/gateway/mode`: `ok` (default), `exit` (exit 1 at start), `never-ready` (runs but
///   never serves nor prints the ready line), `oom` (allocates until the memory limit kills it);
/// - `/etc/gateway/version`: printed at start and served at `/version`.
pub const GATEWAY_SH: &str = r#"#!/bin/sh
PORT="${GATEWAY_PORT:-18789}"
MODE="$(cat /etc/gateway/mode 2>/dev/null || echo ok)"
VERSION="$(cat /etc/gateway/version 2>/dev/null || echo dev)"
echo "[gateway] starting openclaw gateway version $VERSION (mode $MODE)"
case "$MODE" in
  exit)
    echo "[gateway] fatal: invalid configuration" >&2
    exit 1 ;;
  never-ready)
    while true; do sleep 1; done ;;
  oom)
    x=a
    while true; do x="$x$x"; done ;;
esac
mkdir -p /tmp/www
printf '{"ok":true,"status":"live"}' > /tmp/www/healthz
printf '%s' "$VERSION" > /tmp/www/version
echo "[gateway] listening on ws://0.0.0.0:$PORT"
exec httpd -f -p "$PORT" -h /tmp/www
"#;

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
