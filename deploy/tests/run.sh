#!/bin/bash
# Tests of deploy/: shellcheck, systemd-analyze, create-vm.sh's gcloud argv, the GitHub Actions
# example, and the startup script run repeatedly in a Debian 12 container.
#
#   deploy/tests/run.sh [static|create-vm|workflow|workflows|startup|systemd|vm]...   (default: all)
#
# Prints one line per check and, last, "N passed, M failed"; exits 1 when a check failed.
# Needs root (debootstrap, docker) and a Docker engine; installs shellcheck, debootstrap and
# python3-yaml from Debian when missing. CLAWOPS_AGENT_BIN / CLAWOPS_BIN: use these binaries
# instead of building them with cargo.
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY=$(dirname "$HERE")
ROOT=$(dirname "$DEPLOY")
source "$HERE/lib.sh"
source "$HERE/startup.sh"
source "$HERE/systemd.sh"
source "$HERE/workflows.sh"
source "$HERE/vm.sh"

TMP=$(mktemp -d /tmp/clawops-deploy-test.XXXXXX)
CONTAINER=""
SERVER_PID=""
cleanup() {
  [[ -n "$CONTAINER" ]] && docker rm -f "$CONTAINER" >/dev/null 2>&1
  [[ -n "$SYSD_CONTAINER" ]] && docker rm -f "$SYSD_CONTAINER" >/dev/null 2>&1
  [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null
  vm_cleanup
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A python3 (3.10+) with PyYAML: the one on PATH, else Debian's with python3-yaml.
find_python() {
  local p
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import sys, yaml; assert sys.version_info >= (3, 10)' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  need_cmd /usr/bin/python3 python3 >&2 && apt-get install -y -q python3-yaml >/dev/null 2>&1
  /usr/bin/python3 -c 'import yaml' && echo /usr/bin/python3
}

# py_checks ARGS...: runs checks.py and adds its counts to ours.
py_checks() {
  local out counts
  out=$("$PY" "$HERE/checks.py" "$@" 2>&1)
  counts=$(tail -n 1 <<<"$out")
  if [[ "$counts" =~ ^counts\ ([0-9]+)\ ([0-9]+)$ ]]; then
    sed '$d' <<<"$out"
    PASSED=$((PASSED + BASH_REMATCH[1]))
    FAILED=$((FAILED + BASH_REMATCH[2]))
  else
    failed "checks.py $1" "$out"
  fi
}

SYSTEMD_UNITS=/usr/lib/systemd/system
[[ -d $SYSTEMD_UNITS ]] || SYSTEMD_UNITS=/lib/systemd/system

# sa_root UNIT [DROPIN]: sets SA_ROOT to a scratch root with systemd's own units, the unit (and
# drop-in) and an executable at the ExecStart path, so that `systemd-analyze verify` reports
# nothing but the unit's own problems.
sa_root() {
  local root
  root=$(mktemp -d "$TMP/sa.XXXXXX")
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
  cp -a "$SYSTEMD_UNITS" "$root/usr/lib/systemd/system"
  printf '#!/bin/sh\nexit 0\n' >"$root/usr/local/bin/clawops-agent"
  chmod 755 "$root/usr/local/bin/clawops-agent"
  cp "$1" "$root/etc/systemd/system/clawops-agent.service"
  if [[ -n "${2:-}" ]]; then
    mkdir -p "$root/etc/systemd/system/clawops-agent.service.d"
    cp "$2" "$root/etc/systemd/system/clawops-agent.service.d/10-paths.conf"
  fi
  SA_ROOT=$root
}

# analyze_verify UNIT [DROPIN]: prints the findings of `systemd-analyze verify`; returns its status.
analyze_verify() {
  sa_root "$@"
  [[ -z "${ANALYZE_NO_BINARY:-}" ]] || rm "$SA_ROOT/usr/local/bin/clawops-agent"
  systemd-analyze verify --root="$SA_ROOT" /etc/systemd/system/clawops-agent.service 2>&1
}

group_static() {
  section "shellcheck"
  local f
  for f in "$DEPLOY"/*.sh "$HERE"/*.sh "$HERE"/shims/*; do
    check "shellcheck ${f#"$ROOT"/}" shellcheck -x "$f"
  done
  check "startup script uses set -Eeuo pipefail" grep -qx 'set -Eeuo pipefail' "$DEPLOY/startup-script.sh"
  check "no curl | sh anywhere" bash -c "! grep -rEn '(curl|wget)[^|#]*\\|[[:space:]]*(sudo[[:space:]]+)?(ba)?sh' '$DEPLOY' --include='*.sh' --include='*.yml' --exclude-dir=tests"

  section "systemd unit"
  local unit="$DEPLOY/clawops-agent.service" out rc=0
  out=$(analyze_verify "$unit") || rc=$?
  expect_eq "systemd-analyze verify: no findings" "0:" "$rc:$out"
  local exposure
  sa_root "$unit"
  exposure=$(systemd-analyze security --offline=true --root="$SA_ROOT" \
    /etc/systemd/system/clawops-agent.service 2>&1 | sed -n 's/.*Overall exposure level for clawops-agent.service: \([0-9.]*\).*/\1/p')
  check "systemd-analyze security exposure ${exposure:-?} <= 2.0" \
    awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'
  # The check has teeth: a misspelt key and a missing binary are findings.
  sed 's/^MemoryMax=/MemoryMaxx=/' "$unit" >"$TMP/typo.service"
  out=$(analyze_verify "$TMP/typo.service")
  expect_contains "verify reports a misspelt key (control)" "$out" "Unknown key 'MemoryMaxx'"
  out=$(ANALYZE_NO_BINARY=1 analyze_verify "$unit")
  expect_contains "verify reports a missing ExecStart binary (control)" "$out" "is not executable"
  local setting
  for setting in User=clawops SupplementaryGroups=docker NoNewPrivileges=yes \
    ProtectSystem=strict ReadWritePaths=/var/lib/clawops ProtectHome=read-only PrivateTmp=yes \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' MemoryMax=256M Restart=on-failure \
    Environment=GIT_CONFIG_GLOBAL=/etc/clawops/gitconfig \
    'ExecStart=/usr/local/bin/clawops-agent --config /etc/clawops/agent.toml --log-format human'; do
    check "unit sets $setting" grep -qxF "$setting" "$unit"
  done
}

group_create_vm() {
  section "create-vm.sh"
  local sha url=https://example.com/releases/v1/clawops-agent out rc
  sha=$(printf 'agent' | sha256sum | cut -d' ' -f1)
  local args=(--project my-proj --zone europe-west1-b --name gw-test --owner alice
    --agent-url "$url" --agent-sha256 "$sha")
  mkdir -p "$TMP/gcloud-bin"
  cp "$HERE/shims/gcloud" "$TMP/gcloud-bin/gcloud"
  export FAKE_GCLOUD_LOG="$TMP/gcloud.log" FAKE_GCLOUD_PROJECT=my-proj
  : >"$FAKE_GCLOUD_LOG"
  rc=0
  PATH="$TMP/gcloud-bin:$PATH" "$DEPLOY/create-vm.sh" "${args[@]}" --dry-run >"$TMP/dry-run.txt" 2>&1 || rc=$?
  expect_eq "dry run exits 0" 0 "$rc"
  expect_eq "dry run calls no gcloud" "" "$(cat "$FAKE_GCLOUD_LOG")"
  py_checks create-vm "$TMP/dry-run.txt" "$DEPLOY" my-proj europe-west1-b gw-test alice "$url" "$sha" 0

  out=$("$DEPLOY/create-vm.sh" "${args[@]}" --ssh-from-iap --dry-run 2>&1)
  expect_contains "--ssh-from-iap: SSH from IAP's range only" "$out" \
    "--rules=tcp:22 --source-ranges=35.235.240.0/20 --target-tags=clawops-gateway"
  expect_contains "--ssh-from-iap: ssh command tunnels through IAP" "$out" "--tunnel-through-iap"
  expect_contains "--ssh-from-iap: clawops tunnels through IAP" "$out" \
    'clawops --via "gcloud://gw-test?zone=europe-west1-b&project=my-proj&iap=true"'

  : >"$FAKE_GCLOUD_LOG"
  rc=0
  PATH="$TMP/gcloud-bin:$PATH" "$DEPLOY/create-vm.sh" "${args[@]}" >"$TMP/real.txt" 2>&1 || rc=$?
  expect_eq "real run (fake gcloud) exits 0" 0 "$rc"
  py_checks same-argv "$TMP/dry-run.txt" "$FAKE_GCLOUD_LOG"
  : >"$FAKE_GCLOUD_LOG"
  PATH="$TMP/gcloud-bin:$PATH" "$DEPLOY/create-vm.sh" --agent-url "$url" --agent-sha256 "$sha" \
    --owner alice --dry-run >"$TMP/default-project.txt" 2>&1
  expect_contains "project defaults to gcloud's configured one" "$(cat "$TMP/default-project.txt")" \
    "gcloud compute instances create openclaw-gateway --project=my-proj --zone=us-central1-a"

  # Without --agent-url: the startup script prepares the VM and `clawops install` brings the agent.
  PATH="$TMP/gcloud-bin:$PATH" "$DEPLOY/create-vm.sh" --project my-proj --zone europe-west1-b \
    --name gw-test --owner alice --dry-run >"$TMP/no-agent.txt" 2>&1
  py_checks create-vm "$TMP/no-agent.txt" "$DEPLOY" my-proj europe-west1-b gw-test alice "" "" 0

  rc=0
  out=$("$DEPLOY/create-vm.sh" --project p --agent-url "$url" --dry-run 2>&1) || rc=$?
  expect_eq "missing --agent-sha256: exit 2" 2 "$rc"
  expect_contains "missing --agent-sha256: says what to pass" "$out" "sha256sum clawops-agent"
  rc=0
  out=$("$DEPLOY/create-vm.sh" "${args[@]}" --agent-url http://example.com/a --dry-run 2>&1) || rc=$?
  expect_eq "plain-http agent URL: exit 2" "2" "$rc"
  rc=0
  out=$("$DEPLOY/create-vm.sh" "${args[@]}" --owner 'Bob Smith' --dry-run 2>&1) || rc=$?
  expect_contains "invalid owner refused" "$rc:$out" "2:create-vm.sh: --owner Bob Smith is not a valid Linux user name"
  check "--help works" "$DEPLOY/create-vm.sh" --help
}

group_workflow() {
  section "GitHub Actions example and README commands"
  local bin=${CLAWOPS_BIN:-}
  if [[ -z "$bin" ]]; then
    if ! (cd "$ROOT" && cargo build -q -p clawops --bin clawops); then
      failed "build the clawops CLI (cargo build -p clawops)"
      return
    fi
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawops"
  fi
  py_checks workflow "$DEPLOY/github-actions/deploy.yml" "$DEPLOY/README.md" "$bin"
}

main() {
  local groups=("$@") g start
  ((${#groups[@]} > 0)) || groups=(static create-vm workflow workflows startup systemd vm)
  need_cmd shellcheck shellcheck || failed "shellcheck available"
  need_cmd systemd-analyze systemd || failed "systemd-analyze available"
  need_cmd docker docker.io || failed "docker available"
  PY=$(find_python) || { failed "python3 with PyYAML available"; summary; exit 1; }
  for g in "${groups[@]}"; do
    start=$SECONDS
    case "$g" in
      static) group_static ;;
      create-vm) group_create_vm ;;
      workflow) group_workflow ;;
      workflows) group_workflows ;;
      startup) group_startup ;;
      systemd) group_systemd ;;
      vm) group_vm ;;
      *) failed "unknown group $g (static, create-vm, workflow, workflows, startup, systemd, vm)" ;;
    esac
    printf '   (%s: %ss)\n' "$g" $((SECONDS - start))
  done
  summary
}

main "$@"
