#!/bin/bash
# clawops GCE startup script: installs and maintains clawops-agent on a Debian 12 VM.
#
# GCE runs it as root on every boot (google-startup-scripts.service); run it again by hand with
# `sudo google_metadata_script_runner startup`. Every step is logged to stdout, which the runner
# forwards to the journal (`journalctl -u google-startup-scripts.service`) and the serial console.
# It is idempotent: a second run changes no file and restarts nothing that is running.
#
# Instance metadata attributes it reads (deploy/create-vm.sh sets them):
#   clawops-agent-url      https URL of the clawops-agent binary                      (required)
#   clawops-agent-sha256   its sha256; checked before anything is replaced            (required)
#   clawops-agent-unit     the systemd unit, deploy/clawops-agent.service             (required)
#   clawops-repo-owner     account that owns the OpenClaw checkout; created if absent  (required)
#   clawops-repo-path      the checkout                         (default ~OWNER/openclaw)
#   clawops-repo-url       cloned into the checkout when that is empty        (default: no clone)
#   clawops-repo-branch    branch the agent deploys                             (default main)
#   clawops-service        compose service the agent updates            (default openclaw-gateway)
# /etc/clawops/agent.toml, /etc/clawops/gitconfig and the unit's paths drop-in are written from
# these once, when absent; after that they belong to the operator and are never overwritten.
#
# Environment (tests): CLAWOPS_METADATA_URL replaces http://metadata.google.internal/computeMetadata/v1.
set -Eeuo pipefail
umask 022

readonly METADATA_URL="${CLAWOPS_METADATA_URL:-http://metadata.google.internal/computeMetadata/v1}"
readonly AGENT_BIN=/usr/local/bin/clawops-agent
readonly CONF_DIR=/etc/clawops
readonly CONFIG="$CONF_DIR/agent.toml"
readonly GITCONFIG="$CONF_DIR/gitconfig"
readonly TOKEN="$CONF_DIR/token"
readonly STATE_DIR=/var/lib/clawops
readonly UNIT_NAME=clawops-agent.service
readonly UNIT="/etc/systemd/system/$UNIT_NAME"
readonly DROPIN="/etc/systemd/system/$UNIT_NAME.d/10-paths.conf"
readonly DOCKER_KEY_FPR=9DC858229FC7DD38854AE2D88D81803C0EBFCD88

log() { printf 'clawops-startup: %s\n' "$*"; }
fail() {
  printf 'clawops-startup: ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'printf "clawops-startup: ERROR: line %s: \`%s\` failed\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# Problems that must fail the run but should not stop the remaining steps (a bad checksum must
# not keep a changed unit from being installed, nor the installed agent from being started).
problems=()
problem() {
  printf 'clawops-startup: ERROR: %s\n' "$*" >&2
  problems+=("$*")
}
# Why the agent must be restarted; empty means it keeps running untouched.
restart_reasons=()

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- metadata ---------------------------------------------------------------------------------

# metadata_to_file NAME FILE: 0 when the attribute exists, 10 when it is not set; dies otherwise.
metadata_to_file() {
  local code
  code=$(curl -sS --retry 5 --retry-connrefused --retry-delay 2 --connect-timeout 5 \
    --max-time 30 -H 'Metadata-Flavor: Google' -o "$2" -w '%{http_code}' \
    "$METADATA_URL/instance/attributes/$1") ||
    fail "cannot reach the metadata server at $METADATA_URL (attribute $1)"
  case "$code" in
    200) return 0 ;;
    404) return 10 ;;
    *) fail "the metadata server answered HTTP $code for attribute $1" ;;
  esac
}

# attr NAME DEFAULT: prints the attribute, or DEFAULT when it is not set.
attr() {
  local rc=0
  metadata_to_file "$1" "$work/attr" || rc=$?
  case "$rc" in
    0) cat "$work/attr" ;;
    10) printf '%s' "$2" ;;
    *) exit "$rc" ;;
  esac
}

require() {
  [[ -n "$2" ]] || fail "instance metadata attribute $1 is not set; add it with \
\`gcloud compute instances add-metadata VM --zone ZONE --metadata $1=VALUE\` and re-run \
\`sudo google_metadata_script_runner startup\`"
}

# validate NAME VALUE REGEX WHAT: the values end up in TOML, systemd and git config files;
# a narrow character set keeps all three free of quoting problems.
validate() {
  [[ "$2" =~ $3 && "$2" != *..* ]] || fail "metadata attribute $1=\"$2\" is not valid: expected $4"
}

# --- small idempotent helpers -------------------------------------------------------------------

apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    apt-get update -q
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ensure_dir PATH OWNER GROUP MODE
ensure_dir() {
  if [[ ! -d "$1" ]]; then
    install -d -o "$2" -g "$3" -m "$4" "$1"
    log "created $1 ($2:$3 $4)"
  elif [[ "$(stat -c '%U:%G %a' "$1")" != "$2:$3 ${4#0}" ]]; then
    chown "$2:$3" "$1"
    chmod "$4" "$1"
    log "fixed owner/mode of $1 ($2:$3 $4)"
  fi
}

# install_file SRC DEST OWNER GROUP MODE: atomic replace (rename in the same directory).
install_file() {
  install -o "$3" -g "$4" -m "$5" "$1" "$2.clawops-new"
  mv -f "$2.clawops-new" "$2"
}

# write_once DEST OWNER GROUP MODE < content: operator-owned files are created, never replaced.
write_once() {
  if [[ -e "$1" ]]; then
    log "$1 exists; leaving it as it is"
    cat >/dev/null
    return 1
  fi
  cat >"$work/once"
  [[ -d "$(dirname "$1")" ]] || install -d -m 0755 "$(dirname "$1")"
  install_file "$work/once" "$1" "$2" "$3" "$4"
  log "wrote $1"
}

# --- steps ------------------------------------------------------------------------------------

exec 9>/run/clawops-startup.lock
flock -w 900 9 || fail "another run of this script holds /run/clawops-startup.lock"
log "start (metadata server $METADATA_URL)"

log "step 1/8: packages"
command -v curl >/dev/null || apt_install curl ca-certificates
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  log "docker and the compose plugin are installed"
else
  # Docker's own repository (the guide's Docker 28+ with BuildKit and the compose plugin),
  # added the documented way with its signing key checked against the published fingerprint.
  command -v gpg >/dev/null || apt_install gnupg ca-certificates
  curl -fsSL --proto '=https' --retry 3 -o "$work/docker.asc" \
    https://download.docker.com/linux/debian/gpg
  fpr=$(gpg --show-keys --with-colons "$work/docker.asc" | awk -F: '$1 == "fpr" { print $10; exit }')
  [[ "$fpr" == "$DOCKER_KEY_FPR" ]] ||
    fail "Docker's apt signing key has fingerprint '$fpr', expected $DOCKER_KEY_FPR; not installing"
  install -d -m 0755 /etc/apt/keyrings
  install -m 0644 "$work/docker.asc" /etc/apt/keyrings/docker.asc
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && printf '%s' "$VERSION_CODENAME")
  printf 'deb [arch=%s signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian %s stable\n' \
    "$(dpkg --print-architecture)" "$codename" >/etc/apt/sources.list.d/docker.list
  apt_updated=0
  apt_install docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
  systemctl enable --now docker.service
fi
command -v git >/dev/null || apt_install git
command -v setfacl >/dev/null || apt_install acl
log "git and acl are installed"

log "step 2/8: metadata attributes"
agent_url=$(attr clawops-agent-url "")
agent_sha=$(attr clawops-agent-sha256 "")
agent_sha=${agent_sha,,}
owner=$(attr clawops-repo-owner "")
repo=$(attr clawops-repo-path "")
repo_url=$(attr clawops-repo-url "")
branch=$(attr clawops-repo-branch main)
service=$(attr clawops-service openclaw-gateway)
require clawops-agent-url "$agent_url"
require clawops-agent-sha256 "$agent_sha"
require clawops-repo-owner "$owner"
validate clawops-agent-url "$agent_url" '^https?://[^[:space:]]+$' "an https:// (or http://) URL"
validate clawops-agent-sha256 "$agent_sha" '^[0-9a-f]{64}$' "64 hex digits (sha256sum)"
validate clawops-repo-owner "$owner" '^[a-z_][a-z0-9_-]{0,31}$' "a Linux user name"
validate clawops-repo-branch "$branch" '^[A-Za-z0-9_][A-Za-z0-9._/-]*$' "a branch name"
validate clawops-service "$service" '^[A-Za-z0-9][A-Za-z0-9._-]*$' "a compose service name"
[[ -z "$repo" ]] || validate clawops-repo-path "$repo" '^/[A-Za-z0-9._/-]+$' \
  "an absolute path of letters, digits, '.', '_', '-' and '/'"
[[ -z "$repo_url" ]] || validate clawops-repo-url "$repo_url" '^[A-Za-z0-9/][^[:space:]]*$' \
  "a git URL without spaces"
log "agent $agent_url (sha256 $agent_sha); owner $owner; branch $branch; service $service"

log "step 3/8: users and directories"
getent group docker >/dev/null || { groupadd --system docker && log "created group docker"; }
if ! getent passwd clawops >/dev/null; then
  useradd --system --user-group --groups docker --home-dir "$STATE_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "clawops agent" clawops
  log "created system user clawops (groups: clawops docker)"
  restart_reasons+=("user created")
elif ! id -nG clawops | tr ' ' '\n' | grep -qx docker; then
  usermod -aG docker clawops
  log "added clawops to the docker group"
  restart_reasons+=("docker group added")
fi
if ! getent passwd "$owner" >/dev/null; then
  # The account `gcloud compute ssh` logs in as (it adopts an existing account of that name).
  useradd --create-home --user-group --shell /bin/bash "$owner"
  log "created user $owner (owner of the OpenClaw checkout)"
fi
home=$(getent passwd "$owner" | cut -d: -f6)
if [[ ! -d "$home" ]]; then
  # OS Login accounts get their home at first login; the checkout needs it now.
  install -d -o "$owner" -g "$(id -gn "$owner")" -m 0700 "$home"
  log "created $home for $owner"
fi
repo=${repo:-$home/openclaw}
ensure_dir "$CONF_DIR" root clawops 0750
ensure_dir "$STATE_DIR" clawops clawops 0750

log "step 4/8: agent binary $AGENT_BIN"
installed_sha=""
kept="no agent is installed"
if [[ -f "$AGENT_BIN" ]]; then
  installed_sha=$(sha256sum "$AGENT_BIN" | cut -d' ' -f1)
  kept="keeping the installed agent (sha256 $installed_sha)"
fi
if [[ "$installed_sha" == "$agent_sha" ]]; then
  log "agent is up to date (sha256 $agent_sha); not downloading"
elif ! curl -fsSL --proto '=https,http' --retry 3 --retry-connrefused --connect-timeout 10 \
  -o "$work/agent" "$agent_url"; then
  problem "cannot download $agent_url; $kept"
else
  got=$(sha256sum "$work/agent" | cut -d' ' -f1)
  if [[ "$got" != "$agent_sha" ]]; then
    problem "checksum mismatch for $agent_url: expected $agent_sha (clawops-agent-sha256), \
got $got; $kept"
  else
    install_file "$work/agent" "$AGENT_BIN" root root 0755
    log "installed agent sha256 $agent_sha${installed_sha:+ (replaces $installed_sha)}"
    restart_reasons+=("new agent binary")
  fi
fi

log "step 5/8: configuration in $CONF_DIR"
if write_once "$CONFIG" root clawops 0640 <<EOF; then
# clawops agent configuration, written once by the startup script from the VM's metadata.
# It is yours now: the script never overwrites it. After editing, check and apply it with
#   sudo -u clawops clawops-agent check-config --config $CONFIG
#   sudo systemctl restart $UNIT_NAME
# Moving the checkout? Update $GITCONFIG and $DROPIN too.
[app]
owner = "$owner"
repo = "$repo"
branch = "$branch"
service = "$service"
EOF
  restart_reasons+=("config written")
fi
if write_once "$GITCONFIG" root clawops 0640 <<EOF; then
# Git configuration of the clawops agent only (GIT_CONFIG_GLOBAL in its unit), written once by
# the startup script; yours to edit. The checkout belongs to $owner and git runs as clawops,
# so git's ownership check is told that this one repository is trusted. A private remote's
# credentials go here too, e.g. [core] sshCommand = ssh -i /etc/clawops/deploy_key
# (a key owned by clawops, mode 0600).
[safe]
	directory = $repo
EOF
  restart_reasons+=("gitconfig written")
fi
if [[ ! -e "$TOKEN" ]]; then
  # 32 random bytes as hex. The agent refuses a token file that group or others can read.
  od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$work/token"
  install_file "$work/token" "$TOKEN" clawops clawops 0600
  log "generated the API token $TOKEN (clawops 0600); fetch it with \`sudo cat $TOKEN\`"
  restart_reasons+=("token generated")
elif [[ "$(stat -c '%U:%G %a' "$TOKEN")" != "clawops:clawops 600" ]]; then
  chown clawops:clawops "$TOKEN"
  chmod 0600 "$TOKEN"
  log "fixed owner/mode of $TOKEN (clawops:clawops 600)"
  restart_reasons+=("token mode fixed")
else
  log "token $TOKEN exists (clawops 0600); keeping it"
fi

log "step 6/8: checkout $repo shared with the agent"
# Git runs as clawops in a checkout that belongs to $owner (see the unit's comments). Default
# POSIX ACLs give both users rwX on everything created later, whatever the creator's umask, so a
# `git pull` by $owner does not lock the agent out and vice versa.
acl="u:clawops:rwX,u:$owner:rwX"
default_acl="d:u:clawops:rwX,d:u:$owner:rwX"
share_tree() {
  local have
  have=$(getfacl -p --omit-header "$1" 2>/dev/null || true)
  if grep -q '^default:user:clawops:rwx' <<<"$have" &&
    grep -q "^default:user:$owner:rwx" <<<"$have"; then
    log "$1 is shared with clawops already"
    return
  fi
  setfacl -R -P -m "$acl" "$1"
  find "$1" -type d -exec setfacl -m "$default_acl" {} +
  log "shared $1 with clawops (ACL $acl, default ACL on directories)"
}
# ensure_traverse DIR: clawops may pass through DIR and every directory above it (x only).
ensure_traverse() {
  local parent
  parent=$(dirname "$1")
  [[ "$parent" == "$1" ]] || ensure_traverse "$parent"
  if ! runuser -u clawops -- test -x "$1"; then
    setfacl -m u:clawops:x "$1"
    log "let clawops traverse $1 (ACL u:clawops:x; nothing in it becomes listable)"
  fi
}
for dir in "$repo" "$home/.openclaw"; do
  if [[ ! -e "$dir" ]]; then
    # Created empty so the ACLs are inherited by what `git clone` / the gateway put in it.
    install -d -o "$owner" -g "$(id -gn "$owner")" \
      -m "$([[ $dir == "$repo" ]] && echo 0755 || echo 0700)" "$dir"
    log "created $dir (owner $owner)"
  fi
  ensure_traverse "$(dirname "$dir")"
  share_tree "$dir"
done
if [[ -z "$(ls -A "$repo")" ]]; then
  if [[ -n "$repo_url" ]]; then
    log "cloning $repo_url (branch $branch) into $repo as $owner"
    runuser -u "$owner" -- env HOME="$home" git clone --quiet --branch "$branch" -- "$repo_url" "$repo" ||
      problem "git clone of $repo_url into $repo failed; clone it as $owner and re-run this script"
  else
    log "$repo is empty: clone OpenClaw into it as $owner (git clone URL $repo)"
  fi
fi

log "step 7/8: systemd unit $UNIT"
unit_changed=0
if metadata_to_file clawops-agent-unit "$work/unit"; then
  if cmp -s "$work/unit" "$UNIT"; then
    log "unit is up to date"
  else
    install_file "$work/unit" "$UNIT" root root 0644
    log "installed $UNIT"
    unit_changed=1
  fi
elif [[ -f "$UNIT" ]]; then
  problem "metadata attribute clawops-agent-unit is not set; keeping the installed $UNIT"
else
  problem "metadata attribute clawops-agent-unit is not set and no unit is installed; set it \
with --metadata-from-file clawops-agent-unit=deploy/clawops-agent.service"
fi
if write_once "$DROPIN" root root 0644 <<EOF; then
# Written once by the clawops startup script; yours to edit (then: systemctl daemon-reload).
# Beyond $STATE_DIR, the agent may write only to the checkout and the gateway's state
# (snapshots before updates are restored from there). '-' : may not exist yet.
[Service]
ReadWritePaths=-$repo -$home/.openclaw
EOF
  unit_changed=1
fi
if [[ $unit_changed == 1 ]]; then
  systemctl daemon-reload
  log "systemctl daemon-reload"
  restart_reasons+=("unit changed")
fi
if [[ -f "$UNIT" ]] && ! systemctl is-enabled --quiet "$UNIT_NAME"; then
  systemctl enable "$UNIT_NAME"
  log "enabled $UNIT_NAME"
fi

log "step 8/8: agent service"
config_ok=0
if [[ ! -x "$AGENT_BIN" ]]; then
  problem "no agent installed at $AGENT_BIN; not starting $UNIT_NAME"
elif ! out=$(runuser -u clawops -- "$AGENT_BIN" check-config --config "$CONFIG" 2>&1); then
  problem "$CONFIG is not valid, not (re)starting the agent: $out"
elif grep -q PROBLEM <<<"$out"; then
  problem "the agent cannot use its token: $(grep PROBLEM <<<"$out")"
else
  config_ok=1
  log "configuration checked (clawops-agent check-config as clawops)"
fi
if [[ $config_ok == 1 && -f "$UNIT" ]]; then
  action=""
  if ((${#restart_reasons[@]} > 0)); then
    action=restart
    log "restarting $UNIT_NAME: $(printf '%s, ' "${restart_reasons[@]}" | sed 's/, $//')"
  elif ! systemctl is-active --quiet "$UNIT_NAME"; then
    action=start
    log "$UNIT_NAME is not running; starting it"
  else
    log "$UNIT_NAME is running and nothing changed; not restarting it"
  fi
  if [[ -n "$action" ]]; then
    systemctl "$action" "$UNIT_NAME"
    # A bad config or token makes the agent exit at once; Restart= then shows it as activating.
    sleep 2
    if systemctl is-active --quiet "$UNIT_NAME"; then
      log "$UNIT_NAME is active"
    else
      if command -v journalctl >/dev/null; then
        journalctl -u "$UNIT_NAME" -n 20 --no-pager || true
      fi
      problem "$UNIT_NAME did not stay up after $action; see \`journalctl -u $UNIT_NAME\`"
    fi
  fi
fi

if ((${#problems[@]} > 0)); then
  log "finished with ${#problems[@]} problem(s):"
  for p in "${problems[@]}"; do log "  - $p"; done
  exit 1
fi
log "done: agent sha256 $agent_sha installed and running (settings: $CONFIG)"
