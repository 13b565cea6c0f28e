#!/bin/sh
# Plays OpenClaw's gateway for the clawops demo and tests (busybox only). Reads, at start:
#   /etc/gateway/mode     ok (default) | exit (exit 1 at start) | never-ready | oom (allocate until killed)
#   /etc/gateway/version  printed at start and served in /healthz
#   GATEWAY_PORT          port inside the container (default 18789)
PORT="${GATEWAY_PORT:-18789}"
MODE="$(cat /etc/gateway/mode 2>/dev/null || echo ok)"
VERSION="$(cat /etc/gateway/version 2>/dev/null || echo dev)"
echo "[gateway] starting openclaw gateway $VERSION"
case "$MODE" in
  exit)
    echo "[gateway] fatal: invalid config in ~/.openclaw/openclaw.json" >&2
    exit 1 ;;
  never-ready)
    while true; do sleep 1; done ;;
  oom)
    x=a
    while true; do x="$x$x"; done ;;
esac
mkdir -p /tmp/www
printf '{"ok":true,"status":"live","version":"%s"}' "$VERSION" > /tmp/www/healthz
echo "[gateway] listening on ws://0.0.0.0:$PORT"
exec httpd -f -p "$PORT" -h /tmp/www
