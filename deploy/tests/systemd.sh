# shellcheck shell=bash
# The startup script and the hardened unit under a real systemd (sourced by run.sh).
#
# The same Debian 12 rootfs as startup.sh (it includes systemd), this time with systemd as
# PID 1 and no shims but `docker`: the script really reloads, enables and (re)starts the unit,
# the real agent runs with every sandbox setting, and the CLI reaches it with the token. The
# container needs CAP_SYS_ADMIN for the unit's mount namespaces (and CAP_SYS_PTRACE for the test
# to look into the agent's through /proc/PID/root); it shares the host's network
# like startup.sh, so the agent listens on a port chosen here, set in an agent.toml that exists
# before the first boot (which the script must then leave alone).

SYSD_CONTAINER=""

# unit_prop PROPERTY: the agent unit's property as systemd has it.
unit_prop() {
  docker exec "$SYSD_CONTAINER" systemctl show clawops-agent.service -P "$1"
}

run_startup_sysd() {
  RUN_RC=0
  RUN_OUT=$(docker exec -e "CLAWOPS_METADATA_URL=$METADATA" "$SYSD_CONTAINER" \
    bash /opt/clawops/startup-script.sh 2>&1) || RUN_RC=$?
}

sysd_setup() {
  local cgroup
  cgroup=$(docker info -f '{{.CgroupVersion}}' 2>/dev/null)
  SYSD_CONTAINER="clawops-deploy-systemd-$$-$RANDOM"
  local args=(-d --name "$SYSD_CONTAINER" --label clawops.test=1 --network host
    --cap-add SYS_ADMIN --cap-add SYS_PTRACE --tmpfs /run --tmpfs /run/lock --tmpfs "/home:rw,exec,mode=0755")
  if [[ "$cgroup" == 2 ]]; then
    args+=(--cgroupns=private)
  else
    args+=(-v /sys/fs/cgroup:/sys/fs/cgroup:ro)
  fi
  docker run "${args[@]}" "$IMAGE" /lib/systemd/systemd >/dev/null || return 1
  local state="" _
  for _ in $(seq 60); do
    state=$(docker exec "$SYSD_CONTAINER" systemctl is-system-running 2>/dev/null)
    [[ "$state" == running || "$state" == degraded ]] && break
    sleep 0.5
  done
  if [[ "$state" != running && "$state" != degraded ]]; then
    echo "systemd did not come up as PID 1 in the container (state '$state', cgroup v$cgroup)"
    docker logs "$SYSD_CONTAINER" 2>&1 | tail -n 20
    return 1
  fi
  AGENT_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  docker exec "$SYSD_CONTAINER" mkdir -p /opt/clawops /etc/clawops
  docker cp "$DEPLOY/startup-script.sh" "$SYSD_CONTAINER:/opt/clawops/startup-script.sh" >/dev/null
  docker cp "$HERE/shims/docker" "$SYSD_CONTAINER:/usr/local/bin/docker" >/dev/null
  printf 'listen = "127.0.0.1:%s"\n\n[app]\nowner = "alice"\nrepo = "/home/alice/openclaw"\n' \
    "$AGENT_PORT" | docker exec -i "$SYSD_CONTAINER" tee /etc/clawops/agent.toml >/dev/null
}

group_systemd() {
  section "startup script and unit under systemd as PID 1"
  local bin=${CLAWOPS_BIN:-}
  if [[ -z "$bin" ]]; then
    if ! (cd "$ROOT" && cargo build -q -p clawops --bin clawops); then
      failed "build the clawops CLI (cargo build -p clawops)"
      return
    fi
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawops"
  fi
  if [[ -z "${FAKE:-}" ]]; then
    # The metadata server, agent binaries and remote of startup.sh, without its container.
    startup_prepare || return
  fi
  reset_attrs
  if ! sysd_setup >"$TMP/sysd-setup.log" 2>&1; then
    failed "systemd container boots" "$(cat "$TMP/sysd-setup.log")"
    return
  fi
  local out
  pass "systemd container boots (systemd $(docker exec "$SYSD_CONTAINER" systemctl --version | head -n 1 | cut -d' ' -f2))"

  run_startup_sysd
  expect_eq "first run under systemd exits 0" 0 "$RUN_RC"
  [[ $RUN_RC == 0 ]] || printf '%s\n' "$RUN_OUT" | sed 's/^/     | /'
  expect_contains "pre-existing agent.toml left alone" "$RUN_OUT" "agent.toml exists; leaving it"
  expect_eq "unit active and enabled" "active enabled" \
    "$(docker exec "$SYSD_CONTAINER" systemctl is-active clawops-agent.service) $(docker exec "$SYSD_CONTAINER" systemctl is-enabled clawops-agent.service)"
  expect_eq "drop-in loaded" "/etc/systemd/system/clawops-agent.service.d/10-paths.conf" \
    "$(unit_prop DropInPaths)"
  local pid
  pid=$(unit_prop MainPID)
  expect_eq "agent runs as clawops" clawops "$(docker exec "$SYSD_CONTAINER" stat -c %U "/proc/$pid")"
  local status
  status=$(docker exec "$SYSD_CONTAINER" cat "/proc/$pid/status")
  expect_contains "no new privileges" "$status" $'NoNewPrivs:\t1'
  expect_contains "seccomp filter active" "$status" $'Seccomp:\t2'
  expect_contains "no capabilities" "$status" $'CapEff:\t0000000000000000'
  expect_contains "in the docker group" " $(awk '/^Groups:/ { $1 = ""; print }' <<<"$status") " \
    " $(docker exec "$SYSD_CONTAINER" getent group docker | cut -d: -f3) "
  expect_eq "memory limit" 268435456 "$(unit_prop MemoryMax)"
  expect_eq "read-write paths" \
    "/var/lib/clawops -/home/alice/openclaw -/home/alice/.openclaw" "$(unit_prop ReadWritePaths)"
  expect_eq "homes hidden (tmpfs)" tmpfs "$(unit_prop ProtectHome)"
  expect_eq "the agent sees the checkout and ~/.openclaw, and no other home file" \
    "openclaw .openclaw|no" \
    "$(docker exec "$SYSD_CONTAINER" ls -A "/proc/$pid/root/home/alice" 2>&1 | sort -r | tr '\n' ' ' | sed 's/ $//')|$(
      docker exec "$SYSD_CONTAINER" test -e "/proc/$pid/root/home/alice/.profile" && echo yes || echo no)"

  local token
  token=$(docker exec "$SYSD_CONTAINER" cat /etc/clawops/token)
  out=$(CLAWOPS_TOKEN=$token timeout 30 "$bin" --addr "http://127.0.0.1:$AGENT_PORT" status 2>&1)
  expect_contains "clawops status with the token reaches the agent" "$out" "clawops-agent"
  local rc=0
  out=$(CLAWOPS_TOKEN=wrong-token-0123456789 timeout 30 "$bin" --addr "http://127.0.0.1:$AGENT_PORT" status 2>&1) || rc=$?
  expect_eq "a wrong token is refused (exit 3)" 3 "$rc"

  local since
  since=$(unit_prop ActiveEnterTimestampMonotonic)
  run_startup_sysd
  expect_eq "second run exits 0" 0 "$RUN_RC"
  expect_eq "second run: same process, not restarted" "$pid $since" \
    "$(unit_prop MainPID) $(unit_prop ActiveEnterTimestampMonotonic)"

  printf '# changed by the test\n' >>"$FAKE/attrs/clawops-agent-unit"
  run_startup_sysd
  expect_eq "changed unit: run exits 0" 0 "$RUN_RC"
  local new_pid
  new_pid=$(unit_prop MainPID)
  if [[ "$new_pid" != "$pid" && "$new_pid" != 0 && "$(unit_prop ActiveState)" == active ]]; then
    pass "changed unit: agent restarted and active"
  else
    failed "changed unit: agent restarted and active" "MainPID $pid -> $new_pid, $(unit_prop ActiveState)"
  fi
  cp "$DEPLOY/clawops-agent.service" "$FAKE/attrs/clawops-agent-unit"
  test_install_mode "$bin"
}

# run_install ARGS...: the script's install mode (what `clawops install` runs with sudo).
run_install() {
  RUN_RC=0
  RUN_OUT=$(docker exec "$SYSD_CONTAINER" bash /opt/clawops/startup-script.sh install \
    --repo-owner alice --agent-unit /opt/clawops/clawops-agent.service "$@" 2>&1) || RUN_RC=$?
}

installed_sha() {
  docker exec "$SYSD_CONTAINER" sha256sum /usr/local/bin/clawops-agent | cut -d' ' -f1
}

# agent_answers: the running agent accepts its token and reports a status.
agent_answers() {
  local token
  token=$(docker exec "$SYSD_CONTAINER" cat /etc/clawops/token)
  CLAWOPS_TOKEN=$token timeout 30 "$1" --addr "http://127.0.0.1:$AGENT_PORT" status >/dev/null 2>&1
}

# A stand-in agent for the failure cases: it runs `--version`, hands `check-config` to the real
# agent (or fails it, when the second argument is `fail`) and exits at once when started.
fake_agent() {
  local check='shift; exec /opt/clawops/agent-v1 check-config "$@"'
  [[ "$2" != fail ]] || check='echo "test agent: this config is not for me" >&2; exit 1'
  cat >"$TMP/$1" <<FAKE
#!/bin/sh
case "\$1" in
  --version) echo "clawops-agent 9.9.9-test" ;;
  check-config) $check ;;
  *) echo "test agent: refusing to start" >&2; exit 1 ;;
esac
FAKE
  chmod 755 "$TMP/$1"
  docker cp "$TMP/$1" "$SYSD_CONTAINER:/opt/clawops/$1" >/dev/null
}

test_install_mode() {
  section "install mode (clawops install) under systemd: no-op, refusals, put back, upgrade"
  local bin=$1 pid v2_sha
  docker cp "$DEPLOY/clawops-agent.service" "$SYSD_CONTAINER:/opt/clawops/clawops-agent.service" >/dev/null
  docker cp "$FAKE/files/agent-v1" "$SYSD_CONTAINER:/opt/clawops/agent-v1" >/dev/null
  docker cp "$FAKE/files/agent-v2" "$SYSD_CONTAINER:/opt/clawops/agent-v2" >/dev/null
  run_install --agent-sha256 "$V1_SHA"
  expect_eq "install mode with the installed agent: exit 0" 0 "$RUN_RC"
  pid=$(unit_prop MainPID)
  run_install --agent-sha256 "$V1_SHA"
  expect_eq "second install: exit 0, same process" "0 $pid" "$RUN_RC $(unit_prop MainPID)"
  expect_contains "second install: says nothing changed" "$RUN_OUT" "done: nothing changed"

  fake_agent agent-badconfig fail
  run_install --agent-file /opt/clawops/agent-badconfig \
    --agent-sha256 "$(sha_of "$TMP/agent-badconfig")"
  expect_eq "new agent refuses the config: exit 1" 1 "$RUN_RC"
  expect_contains "new agent refuses the config: says so" "$RUN_OUT" "not installing the new one"
  expect_eq "new agent refuses the config: old agent installed, same process" "$V1_SHA $pid" \
    "$(installed_sha) $(unit_prop MainPID)"
  expect_eq "new agent refuses the config: nothing staged is left" "" \
    "$(docker exec "$SYSD_CONTAINER" ls /usr/local/bin | grep -v -x -e clawops-agent -e docker)"

  fake_agent agent-nostart ok
  run_install --agent-file /opt/clawops/agent-nostart \
    --agent-sha256 "$(sha_of "$TMP/agent-nostart")"
  expect_eq "new agent does not come up: exit 1" 1 "$RUN_RC"
  expect_contains "new agent does not come up: put back" "$RUN_OUT" \
    "did not come up; put the previous one (sha256 $V1_SHA) back, and it is running again"
  expect_eq "new agent does not come up: previous agent installed and active" "$V1_SHA active" \
    "$(installed_sha) $(unit_prop ActiveState)"
  check "new agent does not come up: the previous agent answers" agent_answers "$bin"

  v2_sha=$(sha_of "$FAKE/files/agent-v2")
  run_install --agent-file /opt/clawops/agent-v2 --agent-sha256 "$v2_sha"
  expect_eq "upgrade: exit 0" 0 "$RUN_RC"
  expect_eq "upgrade: new agent installed and running" "$v2_sha active" \
    "$(installed_sha) $(unit_prop ActiveState)"
  check "upgrade: the new agent answers" agent_answers "$bin"
  expect_eq "upgrade: no previous copy left behind" "" \
    "$(docker exec "$SYSD_CONTAINER" ls /usr/local/bin | grep -v -x -e clawops-agent -e docker)"
  # shellcheck disable=SC2016 # a literal, as a hostile value would come
  run_install --agent-sha256 "$v2_sha" --repo-branch '$(id)'
  expect_eq "hostile setting refused: exit 1" 1 "$RUN_RC"
  expect_contains "hostile setting refused: names the argument" "$RUN_OUT" \
    "--repo-branch=\"\$(id)\" is not valid"
}
