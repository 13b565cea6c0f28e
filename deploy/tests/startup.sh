# shellcheck shell=bash
# deploy/startup-script.sh run repeatedly in a Debian 12 container (sourced by run.sh).
#
# The container comes from a debootstrap'd rootfs (docker import, cached by the hash of its
# recipe). It shares the host's network namespace so that the fake metadata server on
# 127.0.0.1 (fake-metadata.py: attributes, the agent binaries, the upstream git remote) is
# reachable as it is from a VM. systemd is not PID 1 there: `systemctl` is a recording shim,
# and `docker` a shim that makes Docker look installed. /home is a tmpfs because the
# container's fuse-overlayfs accepts POSIX ACLs without enforcing them (a VM's ext4 does).

ROOTFS_SUITE=bookworm
# systemd: only for systemd.sh, which boots it as PID 1; here the shim shadows systemctl.
ROOTFS_PACKAGES=ca-certificates,curl,git,acl,systemd
ROOTFS_RECIPE=3 # bump when rootfs_image changes what it builds

# rootfs_image: prints the image tag, building the image when it is not cached.
rootfs_image() {
  local key tag
  key=$(printf '%s\n' "$ROOTFS_SUITE" minbase "$ROOTFS_PACKAGES" "$ROOTFS_RECIPE" |
    sha256sum | cut -c1-16)
  tag="clawops-test/debian12-rootfs:$key"
  (
    # Two concurrent runs must not both spend a minute on debootstrap.
    flock -w 900 8 || exit 1
    docker image inspect "$tag" >/dev/null 2>&1 && exit 0
    need_cmd debootstrap debootstrap || exit 1
    dir=$(mktemp -d /var/tmp/clawops-rootfs.XXXXXX)
    trap 'rm -rf "$dir" "$dir.log"' EXIT
    echo "building $tag with debootstrap (a minute or two, once)"
    if ! debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" "$ROOTFS_SUITE" "$dir" \
      http://deb.debian.org/debian >"$dir.log" 2>&1; then
      tail -n 20 "$dir.log"
      exit 1
    fi
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
      "$dir"/usr/share/doc "$dir"/usr/share/man "$dir"/usr/share/locale
    tar --numeric-owner -C "$dir" -c . |
      docker import --change 'LABEL clawops.test=1' \
        --change 'LABEL clawops.test.cache=deploy-rootfs' --change 'CMD ["/bin/bash"]' \
        - "$tag" >/dev/null
  ) 8>/tmp/clawops-deploy-rootfs.lock >&2 || return 1
  echo "$tag"
}

cx() { docker exec "$CONTAINER" "$@"; }
cxsh() { docker exec "$CONTAINER" bash -c "$1"; }

set_attr() { printf '%s' "$2" >"$FAKE/attrs/$1"; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# upstream_commit PATH CONTENT MESSAGE: a commit on the remote's main, published over HTTP.
upstream_commit() {
  mkdir -p "$(dirname "$FAKE/work/$1")"
  printf '%s\n' "$2" >"$FAKE/work/$1"
  git -C "$FAKE/work" add -A
  git -C "$FAKE/work" -c user.name=upstream -c user.email=upstream@example.invalid \
    commit -q -m "$3"
  git -C "$FAKE/work" push -q origin main
  git -C "$FAKE/git/openclaw.git" update-server-info
}

# run_startup: runs the script; sets RUN_RC, RUN_OUT, RUN_CALLS (systemctl calls other than the
# is-enabled/is-active queries) and RUN_DOWNLOADS (agent downloads served).
run_startup() {
  cx rm -f /var/tmp/systemctl-shim/calls /var/tmp/docker-shim.calls
  : >"$FAKE/requests.log"
  RUN_RC=0
  RUN_OUT=$(docker exec -e "CLAWOPS_METADATA_URL=$METADATA" "$CONTAINER" \
    bash /opt/clawops/startup-script.sh 2>&1) || RUN_RC=$?
  RUN_CALLS=$(cxsh 'cat /var/tmp/systemctl-shim/calls 2>/dev/null | grep -v "^is-" || true')
  RUN_DOWNLOADS=$(grep -c '^GET /files/' "$FAKE/requests.log" || true)
}

# state: everything the script manages, with contents, owners, modes, ACLs and times, so two
# snapshots are equal only if nothing was written, chmod'ed or chown'ed.
state() {
  # shellcheck disable=SC2016 # expanded by the container's shell
  cxsh '
    for f in /usr/local/bin/clawops-agent /etc/clawops/agent.toml /etc/clawops/gitconfig \
      /etc/clawops/token /etc/systemd/system/clawops-agent.service \
      /etc/systemd/system/clawops-agent.service.d/10-paths.conf \
      /etc/passwd /etc/group /etc/shadow /etc/gshadow; do
      printf "%s %s\n" "$(stat -c "%n %U:%G %a %s %Y %Z" "$f")" "$(sha256sum <"$f")"
    done
    for d in /etc/clawops /var/lib/clawops /home/alice /home/alice/openclaw /home/alice/.openclaw; do
      stat -c "%n %U:%G %a %Y %Z" "$d"
      getfacl -p --omit-header "$d"
    done
    find /home/alice /usr/local/bin /etc/systemd/system -printf "%p %u:%g %m %s %T@ %C@\n" | sort'
}

# agent_binary: prints the clawops-agent to serve (CLAWOPS_AGENT_BIN, else a cargo build).
agent_binary() {
  if [[ -n "${CLAWOPS_AGENT_BIN:-}" ]]; then
    echo "$CLAWOPS_AGENT_BIN"
    return
  fi
  (cd "$ROOT" && cargo build -q -p clawops-agent --bin clawops-agent) >&2 || return 1
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawops-agent"
}

# reset_attrs: the metadata of a freshly created VM (agent v1).
reset_attrs() {
  rm -f "$FAKE"/attrs/*
  set_attr clawops-agent-url "$BASE/files/agent-v1"
  set_attr clawops-agent-sha256 "$V1_SHA"
  cp "$DEPLOY/clawops-agent.service" "$FAKE/attrs/clawops-agent-unit"
  set_attr clawops-repo-owner alice
  set_attr clawops-repo-url "$BASE/git/openclaw.git"
  set_attr clawops-repo-branch main
  set_attr clawops-service openclaw-gateway
}

# startup_prepare: agent binaries, the upstream remote and the fake metadata server (once).
startup_prepare() {
  local bin
  if ! IMAGE=$(rootfs_image); then
    failed "Debian 12 rootfs image (debootstrap + docker import)"
    return 1
  fi
  pass "Debian 12 rootfs image $IMAGE"
  if ! bin=$(agent_binary); then
    failed "build clawops-agent (cargo build -p clawops-agent)"
    return 1
  fi
  FAKE=$TMP/fake
  mkdir -p "$FAKE/attrs" "$FAKE/files" "$FAKE/git"
  # v2 differs from v1 by trailing bytes, which the ELF loader ignores: both run.
  strip -o "$FAKE/files/agent-v1" "$bin" 2>/dev/null || cp "$bin" "$FAKE/files/agent-v1"
  cp "$FAKE/files/agent-v1" "$FAKE/files/agent-v2"
  printf '\nclawops-test-v2\n' >>"$FAKE/files/agent-v2"
  V1_SHA=$(sha_of "$FAKE/files/agent-v1")
  V2_SHA=$(sha_of "$FAKE/files/agent-v2")

  git init -q --bare -b main "$FAKE/git/openclaw.git"
  git init -q -b main "$FAKE/work"
  git -C "$FAKE/work" remote add origin "$FAKE/git/openclaw.git"
  upstream_commit docker-compose.yml 'services: {openclaw-gateway: {image: "openclaw:latest"}}' \
    "initial"

  "$PY" "$HERE/fake-metadata.py" "$FAKE/attrs" "$FAKE/files" "$FAKE/git" \
    "$FAKE/requests.log" "$FAKE/port" &
  # shellcheck disable=SC2034 # run.sh's cleanup stops it
  SERVER_PID=$!
  local i
  for i in $(seq 50); do
    [[ -s "$FAKE/port" ]] && break
    sleep 0.1
  done
  if [[ ! -s "$FAKE/port" ]]; then
    failed "fake metadata server starts"
    return 1
  fi
  BASE="http://127.0.0.1:$(cat "$FAKE/port")"
  METADATA="$BASE/computeMetadata/v1"
}

# startup_container: the container with the shims, for a VM's first boot.
startup_container() {
  reset_attrs
  CONTAINER="clawops-deploy-test-$$-$RANDOM"
  docker run -d --name "$CONTAINER" --label clawops.test=1 --network host \
    --tmpfs /home:rw,exec,mode=0755 "$IMAGE" sleep infinity >/dev/null || return 1
  cx mkdir -p /opt/clawops
  docker cp "$DEPLOY/startup-script.sh" "$CONTAINER:/opt/clawops/startup-script.sh" >/dev/null
  docker cp "$HERE/shims/systemctl" "$CONTAINER:/usr/local/sbin/systemctl" >/dev/null
  docker cp "$HERE/shims/docker" "$CONTAINER:/usr/local/bin/docker" >/dev/null
}

# A git command as the agent runs it: user clawops, its unit's environment, a plain umask.
as_agent() {
  cx runuser -u clawops -- env HOME=/var/lib/clawops GIT_CONFIG_GLOBAL=/etc/clawops/gitconfig \
    GIT_TERMINAL_PROMPT=0 bash -c "umask 022; cd /home/alice/openclaw && $1"
}
as_owner() {
  cx runuser -u alice -- env HOME=/home/alice bash -c "umask 022; cd /home/alice/openclaw && $1"
}

test_first_boot() {
  section "startup script: first boot"
  run_startup
  expect_eq "first run exits 0" 0 "$RUN_RC"
  [[ $RUN_RC == 0 ]] || printf '%s\n' "$RUN_OUT" | sed 's/^/     | /'
  local i
  for i in 1 2 3 4 5 6 7 8; do
    expect_contains "logs step $i/8" "$RUN_OUT" "clawops-startup: step $i/8"
  done
  expect_eq "agent downloaded once" 1 "$RUN_DOWNLOADS"
  expect_eq "installed agent is v1" "$V1_SHA" "$(cx sha256sum /usr/local/bin/clawops-agent | cut -d' ' -f1)"
  expect_eq "agent binary root 755" "root:root 755" "$(cx stat -c '%U:%G %a' /usr/local/bin/clawops-agent)"
  expect_eq "systemctl calls: reload, enable, restart" \
    $'daemon-reload\nenable clawops-agent.service\nrestart clawops-agent.service' "$RUN_CALLS"
  expect_eq "docker is only probed, not installed" "compose version" \
    "$(cx cat /var/tmp/docker-shim.calls)"
  check "unit installed byte for byte" \
    bash -c "docker exec $CONTAINER cat /etc/systemd/system/clawops-agent.service | cmp - '$DEPLOY/clawops-agent.service'"
  expect_eq "drop-in: homes hidden but the checkout and ~/.openclaw, which are writable" \
    $'ProtectHome=tmpfs\nBindPaths=-/home/alice/openclaw -/home/alice/.openclaw\nReadWritePaths=-/home/alice/openclaw -/home/alice/.openclaw' \
    "$(cx grep -E '^(ProtectHome|BindPaths|ReadWritePaths)=' /etc/systemd/system/clawops-agent.service.d/10-paths.conf)"
  expect_eq "agent.toml [app] from metadata" \
    $'owner = "alice"\nrepo = "/home/alice/openclaw"\nbranch = "main"\nservice = "openclaw-gateway"' \
    "$(cxsh "sed -n '/^\[app\]/,\$p' /etc/clawops/agent.toml | tail -n +2")"
  expect_eq "agent.toml root:clawops 640" "root:clawops 640" "$(cx stat -c '%U:%G %a' /etc/clawops/agent.toml)"
  expect_eq "gitconfig trusts only the checkout" "/home/alice/openclaw" \
    "$(cx git config --file /etc/clawops/gitconfig --get-all safe.directory)"
  expect_eq "token clawops:clawops 600" "clawops:clawops 600" "$(cx stat -c '%U:%G %a' /etc/clawops/token)"
  check "token is 64 hex digits" bash -c "docker exec $CONTAINER cat /etc/clawops/token | grep -Eqx '[0-9a-f]{64}'"
  expect_eq "state dir clawops 750" "clawops:clawops 750" "$(cx stat -c '%U:%G %a' /var/lib/clawops)"
  check "clawops is a system user without login" \
    bash -c "docker exec $CONTAINER getent passwd clawops | awk -F: '\$3 < 1000 && \$6 == \"/var/lib/clawops\" && \$7 == \"/usr/sbin/nologin\" { ok = 1 } END { exit !ok }'"
  expect_eq "clawops groups" "clawops docker" "$(cx id -nG clawops)"
  expect_contains "real agent accepted config and token (check-config as clawops)" "$RUN_OUT" \
    "configuration checked"
  expect_contains "checkout cloned as the owner" "$(as_owner 'git log --format=%s; stat -c %U .')" \
    $'initial\nalice'
  local facl
  facl=$(cx getfacl -p --omit-header /home/alice/openclaw/.git/objects)
  expect_contains "checkout has default ACLs for clawops" "$facl" "default:user:clawops:rwx"
  expect_contains "checkout has default ACLs for the owner" "$facl" "default:user:alice:rwx"
  expect_contains "first run ends with done" "$RUN_OUT" "clawops-startup: done"

  # The drop-in the script wrote, verified together with the unit.
  docker cp "$CONTAINER:/etc/systemd/system/clawops-agent.service.d/10-paths.conf" \
    "$TMP/10-paths.conf" >/dev/null
  local out rc=0
  out=$(analyze_verify "$DEPLOY/clawops-agent.service" "$TMP/10-paths.conf") || rc=$?
  expect_eq "systemd-analyze verify: unit + generated drop-in, no findings" "0:" "$rc:$out"
}

test_second_boot() {
  section "startup script: second boot changes nothing"
  local before after
  before=$(state)
  run_startup
  after=$(state)
  expect_eq "second run exits 0" 0 "$RUN_RC"
  if [[ "$before" == "$after" ]]; then
    pass "no file, owner, mode, ACL or timestamp changed"
  else
    failed "no file, owner, mode, ACL or timestamp changed" \
      "$(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after"))"
  fi
  expect_eq "no systemctl call besides is-enabled/is-active" "" "$RUN_CALLS"
  expect_eq "agent not downloaded again (same sha256)" 0 "$RUN_DOWNLOADS"
  expect_contains "says it is not restarting" "$RUN_OUT" "nothing changed; not restarting it"
}

test_git_sharing() {
  section "git in the owner's checkout, as the agent and as the owner"
  local out
  out=$(cx runuser -u clawops -- env HOME=/var/lib/clawops git -C /home/alice/openclaw status 2>&1)
  expect_contains "without the agent's gitconfig git refuses (dubious ownership)" "$out" "dubious ownership"
  upstream_commit app/config.txt one "add app/"
  check "owner pulls (umask 022, creates app/)" as_owner 'git pull -q --ff-only'
  upstream_commit app/config.txt two "change app/"
  upstream_commit app/extra.txt extra "add app/extra"
  check "agent fetches and fast-forwards into the owner's files" \
    as_agent 'git fetch -q origin main && git merge -q --ff-only FETCH_HEAD && grep -qx two app/config.txt'
  upstream_commit app/extra.txt extra2 "change the agent's file"
  upstream_commit lib/new.txt new "add lib/"
  check "owner pulls over what the agent wrote" \
    as_owner 'git pull -q --ff-only && grep -qx extra2 app/extra.txt && test -f lib/new.txt'
  check "agent fetches again" as_agent 'git fetch -q origin main && git merge -q --ff-only FETCH_HEAD'
  expect_eq "tree clean for both" ":" "$(as_agent 'git status --porcelain'):$(as_owner 'git status --porcelain')"
  check "agent snapshots and writes ~/.openclaw made by the owner" \
    bash -c "docker exec $CONTAINER runuser -u alice -- bash -c 'umask 077; mkdir -p /home/alice/.openclaw/ws && echo s >/home/alice/.openclaw/ws/state.json' &&
      docker exec $CONTAINER runuser -u clawops -- bash -c 'cp -a /home/alice/.openclaw/ws /var/lib/clawops/snap && echo t >/home/alice/.openclaw/ws/state.json'"
}

test_operator_edits() {
  section "operator edits are kept"
  cxsh "sed -i 's/^branch = .*/branch = \"release\"/' /etc/clawops/agent.toml && chmod 700 /home/alice"
  local before
  before=$(cx sha256sum /etc/clawops/agent.toml)
  run_startup
  expect_eq "run exits 0" 0 "$RUN_RC"
  expect_eq "edited agent.toml untouched" "$before" "$(cx sha256sum /etc/clawops/agent.toml)"
  expect_contains "logs that it leaves agent.toml alone" "$RUN_OUT" "agent.toml exists; leaving it"
  check "a 0700 home becomes traversable for clawops only" \
    bash -c "docker exec $CONTAINER runuser -u clawops -- test -x /home/alice &&
      docker exec $CONTAINER stat -c %a /home/alice | grep -qx 710"
  expect_eq "no restart for config edits (the operator restarts)" "" "$RUN_CALLS"
  local dropin=/etc/systemd/system/clawops-agent.service.d/10-paths.conf
  # A drop-in exactly as the previous version wrote it is upgraded; an edited one is kept.
  printf '%s\n' "# Written once by the clawops startup script; yours to edit (then: systemctl daemon-reload)." \
    "# Beyond /var/lib/clawops, the agent may write only to the checkout and the gateway's state" \
    "# (snapshots before updates are restored from there). '-' : may not exist yet." \
    "[Service]" "ReadWritePaths=-/home/alice/openclaw -/home/alice/.openclaw" |
    docker exec -i "$CONTAINER" tee "$dropin" >/dev/null
  run_startup
  expect_eq "previous version's drop-in: upgraded, reloaded and restarted" \
    "0 ProtectHome=tmpfs"$'\n'"daemon-reload"$'\n'"restart clawops-agent.service" \
    "$RUN_RC $(cx grep ^ProtectHome "$dropin")"$'\n'"$RUN_CALLS"
  cxsh "echo 'TasksMax=64' >>$dropin"
  before=$(cx sha256sum "$dropin")
  run_startup
  expect_eq "edited drop-in: kept as it is" "0 $before" "$RUN_RC $(cx sha256sum "$dropin")"
  cxsh "sed -i '/^TasksMax=64/d' $dropin"
  cxsh "echo 'bogus_key = 1' >>/etc/clawops/agent.toml"
  run_startup
  expect_eq "invalid agent.toml: run exits 1" 1 "$RUN_RC"
  expect_contains "invalid agent.toml: the agent's error is logged" "$RUN_OUT" "bogus_key"
  expect_eq "invalid agent.toml: agent not restarted" "" "$RUN_CALLS"
  cxsh "sed -i '/^bogus_key/d' /etc/clawops/agent.toml && chmod 644 /etc/clawops/token"
  run_startup
  expect_eq "token made readable: run exits 0" 0 "$RUN_RC"
  expect_eq "token mode repaired" "clawops:clawops 600" "$(cx stat -c '%U:%G %a' /etc/clawops/token)"
  expect_eq "token repaired: agent restarted" "restart clawops-agent.service" "$RUN_CALLS"
}

test_agent_versions() {
  section "agent binary: bad checksum, new version, unit change, stopped agent"
  set_attr clawops-agent-url "$BASE/files/agent-v2"
  set_attr clawops-agent-sha256 "$(printf 'not the agent' | sha256sum | cut -d' ' -f1)"
  run_startup
  expect_eq "wrong sha256: run exits 1" 1 "$RUN_RC"
  expect_eq "wrong sha256: installed agent kept" "$V1_SHA" \
    "$(cx sha256sum /usr/local/bin/clawops-agent | cut -d' ' -f1)"
  expect_contains "wrong sha256: logged" "$RUN_OUT" "checksum mismatch for $BASE/files/agent-v2"
  expect_contains "wrong sha256: says the old agent is kept" "$RUN_OUT" \
    "; keeping the installed agent (sha256 $V1_SHA)"$'\n'
  expect_eq "wrong sha256: no restart" "" "$RUN_CALLS"
  expect_eq "wrong sha256: no partial file left" $'clawops-agent\ndocker' "$(cx ls -A /usr/local/bin)"

  set_attr clawops-agent-sha256 "$V2_SHA"
  run_startup
  expect_eq "new version: run exits 0" 0 "$RUN_RC"
  expect_eq "new version: installed" "$V2_SHA" "$(cx sha256sum /usr/local/bin/clawops-agent | cut -d' ' -f1)"
  expect_eq "new version: restart only" "restart clawops-agent.service" "$RUN_CALLS"
  expect_eq "new version: downloaded once" 1 "$RUN_DOWNLOADS"

  printf '# changed by the test\n' >>"$FAKE/attrs/clawops-agent-unit"
  run_startup
  expect_eq "unit changed: run exits 0" 0 "$RUN_RC"
  expect_eq "unit changed: reload and restart" \
    $'daemon-reload\nrestart clawops-agent.service' "$RUN_CALLS"
  check "unit changed: new unit installed" \
    bash -c "docker exec $CONTAINER cat /etc/systemd/system/clawops-agent.service | cmp - '$FAKE/attrs/clawops-agent-unit'"

  cx systemctl stop clawops-agent.service
  run_startup
  expect_eq "agent stopped: started, not restarted" "start clawops-agent.service" "$RUN_CALLS"

  run_startup
  expect_eq "after all that, a further run changes nothing" "0:" "$RUN_RC:$RUN_CALLS"

  cx rm /usr/local/bin/clawops-agent
  set_attr clawops-agent-sha256 "$V1_SHA"
  run_startup
  expect_eq "no agent and a wrong sha256: exit 1, nothing started" "1:" "$RUN_RC:$RUN_CALLS"
  expect_contains "no agent and a wrong sha256: says so" "$RUN_OUT" \
    "got $V2_SHA; no agent is installed"
  expect_contains "no agent: says it is not starting the unit" "$RUN_OUT" \
    "no agent installed at /usr/local/bin/clawops-agent; not starting"
  set_attr clawops-agent-sha256 "$V2_SHA"
  run_startup
  expect_eq "agent reinstalled and restarted" "0:restart clawops-agent.service" "$RUN_RC:$RUN_CALLS"
}

test_bad_metadata() {
  section "metadata problems"
  expect_eq "fake metadata server insists on Metadata-Flavor" 403 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$METADATA/instance/attributes/clawops-repo-owner")"
  rm "$FAKE/attrs/clawops-repo-owner"
  run_startup
  expect_eq "missing owner: run exits 1" 1 "$RUN_RC"
  expect_contains "missing owner: names the attribute and the fix" "$RUN_OUT" \
    "clawops-repo-owner is not set; add it with \`gcloud compute instances add-metadata"
  set_attr clawops-repo-owner 'alice; rm -rf /'
  run_startup
  expect_contains "hostile owner value refused" "$RUN_OUT" "is not valid: expected a Linux user name"
  set_attr clawops-repo-owner alice
  set_attr clawops-repo-branch '--upload-pack=x'
  run_startup
  expect_contains "hostile branch value refused" "$RUN_OUT" "clawops-repo-branch=\"--upload-pack=x\" is not valid"
  set_attr clawops-repo-branch main
  set_attr clawops-agent-url "file:///etc/shadow"
  run_startup
  expect_contains "non-http agent URL refused" "$RUN_OUT" "clawops-agent-url=\"file:///etc/shadow\" is not valid"
  set_attr clawops-agent-url "$BASE/files/agent-v2"
  run_startup
  expect_eq "valid again: nothing to do" "0:" "$RUN_RC:$RUN_CALLS"
}

group_startup() {
  section "startup script in a Debian 12 container"
  if [[ -z "${FAKE:-}" ]]; then
    startup_prepare || return
  fi
  if ! startup_container; then
    failed "test container starts"
    return
  fi
  test_first_boot
  test_second_boot
  test_git_sharing
  test_operator_edits
  test_agent_versions
  test_bad_metadata
}
