#!/bin/bash
# clawops provisioning: installs and maintains clawops-agent on a Debian or Ubuntu VM with systemd.
#
# One script, three ways in, the same steps:
#   startup-script.sh                 GCE runs it as root on every boot (google-startup-scripts
#                                     .service) with its settings in instance metadata; run it
#                                     again by hand with `sudo google_metadata_script_runner startup`.
#   startup-script.sh install ARGS    `clawops install` runs it over SSH with sudo, the settings
#                                     as arguments (`startup-script.sh help` lists them).
#   startup-script.sh probe           what `clawops install` needs to know first (architecture,
#                                     OS, systemd, sudo, the installed agent); changes nothing.
# Every step is logged to stdout (on GCE the runner forwards it to the journal,
# `journalctl -u google-startup-scripts.service`, and the serial console). It is idempotent: a
# second run changes no file and restarts nothing that is running, and says so on its last line.
# A new agent replaces the old one only after it ran `--version` and accepted the config, and
# the old one is put back when the new one does not come up.
#
# Instance metadata attributes (deploy/create-vm.sh sets them):
#   clawops-agent-url      https URL of the clawops-agent binary     (none: `clawops install` does it)
#   clawops-agent-sha256   its sha256; checked before anything is replaced  (required with the URL)
#   clawops-agent-unit     the systemd unit, deploy/clawops-agent.service   (required with the URL)
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
# What this run changed on the machine; empty means the run was a no-op.
changes=()
changed() {
  log "$*"
  changes+=("$*")
}

# Scratch space, made once a run is going to change something (a probe needs none, so it still
# answers on a full disk).
work=""

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
  [[ "$2" =~ $3 && "$2" != *..* ]] || fail "$(setting_name "$1")=\"$2\" is not valid: expected $4"
}

# setting_name ATTRIBUTE: how the user gave that setting, for messages.
setting_name() {
  if [[ $mode == install ]]; then
    printf -- '--%s' "${1#clawops-}"
  else
    printf 'metadata attribute %s' "$1"
  fi
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
    changed "created $1 ($2:$3 $4)"
  elif [[ "$(stat -c '%U:%G %a' "$1")" != "$2:$3 ${4#0}" ]]; then
    chown "$2:$3" "$1"
    chmod "$4" "$1"
    changed "fixed owner/mode of $1 ($2:$3 $4)"
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
  changed "wrote $1"
}


# --- settings ---------------------------------------------------------------------------------

mode=metadata
agent_url="" agent_file="" agent_sha="" unit_src="" owner="" repo="" repo_url=""
branch=main service=openclaw-gateway listen_port=""

usage() {
  cat <<USAGE
usage: $0                  settings from GCE instance metadata (as root)
       $0 probe            facts about this machine for \`clawops install\`; changes nothing
       $0 install ARGS     settings as arguments (as root); \`clawops install\` runs this:
  --repo-owner USER        account that owns the OpenClaw checkout (required)
  --agent-unit FILE        the systemd unit, deploy/clawops-agent.service (required)
  --agent-file FILE        the agent binary to install, or
  --agent-url URL          where to download it
  --agent-sha256 SHA256    its sha256 (required with either; alone: the agent that must be there)
  --repo-path PATH         the checkout (default ~OWNER/openclaw)
  --repo-url URL           cloned into the checkout while it is empty
  --repo-branch BRANCH     branch the agent deploys (default main)
  --service NAME           compose service the agent updates (default openclaw-gateway)
  --listen-port PORT       the agent's loopback port, when agent.toml is written (default 18777)
USAGE
}

settings_from_metadata() {
  agent_url=$(attr clawops-agent-url "")
  agent_sha=$(attr clawops-agent-sha256 "")
  owner=$(attr clawops-repo-owner "")
  repo=$(attr clawops-repo-path "")
  repo_url=$(attr clawops-repo-url "")
  branch=$(attr clawops-repo-branch main)
  service=$(attr clawops-service openclaw-gateway)
  if metadata_to_file clawops-agent-unit "$work/unit"; then
    unit_src=$work/unit
  fi
  [[ -z "$agent_url" ]] || require clawops-agent-sha256 "$agent_sha"
  [[ -z "$agent_sha" ]] || require clawops-agent-url "$agent_url"
  require clawops-repo-owner "$owner"
}

settings_from_args() {
  while (($# > 0)); do
    (($# >= 2)) || fail "$1 needs a value; \`$0 help\` lists the arguments"
    case "$1" in
      --agent-url) agent_url=$2 ;;
      --agent-sha256) agent_sha=$2 ;;
      --agent-file) agent_file=$2 ;;
      --agent-unit) unit_src=$2 ;;
      --repo-owner) owner=$2 ;;
      --repo-path) repo=$2 ;;
      --repo-url) repo_url=$2 ;;
      --repo-branch) branch=$2 ;;
      --service) service=$2 ;;
      --listen-port) listen_port=$2 ;;
      *) fail "unknown argument $1; \`$0 help\` lists them" ;;
    esac
    shift 2
  done
  [[ -n "$owner" ]] || fail "--repo-owner is required: the account that owns the checkout"
  [[ -n "$unit_src" && -f "$unit_src" ]] ||
    fail "--agent-unit FILE is required: the unit to install (deploy/clawops-agent.service)"
  [[ -z "$agent_file" || -f "$agent_file" ]] || fail "--agent-file $agent_file does not exist"
  [[ -z "$agent_url" || -z "$agent_file" ]] || fail "give --agent-url or --agent-file, not both"
  [[ -z "$agent_file$agent_url" || -n "$agent_sha" ]] ||
    fail "--agent-sha256 is required with --agent-file and --agent-url"
}

validate_settings() {
  agent_sha=${agent_sha,,}
  [[ -z "$agent_url" ]] ||
    validate clawops-agent-url "$agent_url" '^https?://[^[:space:]]+$' "an https:// (or http://) URL"
  [[ -z "$agent_sha" ]] ||
    validate clawops-agent-sha256 "$agent_sha" '^[0-9a-f]{64}$' "64 hex digits (sha256sum)"
  validate clawops-repo-owner "$owner" '^[a-z_][a-z0-9_-]{0,31}$' "a Linux user name"
  validate clawops-repo-branch "$branch" '^[A-Za-z0-9_][A-Za-z0-9._/-]*$' "a branch name"
  validate clawops-service "$service" '^[A-Za-z0-9][A-Za-z0-9._-]*$' "a compose service name"
  [[ -z "$repo" ]] || validate clawops-repo-path "$repo" '^/[A-Za-z0-9._/-]+$' \
    "an absolute path of letters, digits, '.', '_', '-' and '/'"
  [[ -z "$repo_url" ]] || validate clawops-repo-url "$repo_url" '^[A-Za-z0-9/][^[:space:]]*$' \
    "a git URL without spaces"
  [[ -z "$listen_port" ]] ||
    validate clawops-listen-port "$listen_port" '^[1-9][0-9]{0,4}$' "a port number"
}

# os_release KEY: the value of KEY in /etc/os-release (empty when absent).
os_release() {
  [[ -r /etc/os-release ]] || return 0
  # shellcheck source=/dev/null
  (. /etc/os-release && printf '%s' "${!1:-}")
}

is_debian_like() {
  [[ "$(os_release ID)" =~ ^(debian|ubuntu)$ || " $(os_release ID_LIKE) " == *" debian "* ]]
}

# check_host: what `install` needs of the machine, before anything is written.
check_host() {
  [[ -d /run/systemd/system ]] ||
    fail "this machine does not run systemd, which the agent's unit needs; nothing was changed"
  is_debian_like || fail "this machine runs '$(os_release PRETTY_NAME)'; clawops installs on \
Debian or Ubuntu (apt, systemd); nothing was changed"
}

# probe: KEY=VALUE lines for `clawops install`; needs no root and changes nothing.
probe() {
  local sudo=no
  if [[ $EUID == 0 ]]; then
    sudo=root
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=yes
  fi
  printf 'probe=1\nuser=%s\nuid=%s\narch=%s\n' "$(id -un)" "$EUID" "$(uname -m)"
  printf 'os_id=%s\nos_like=%s\nos_name=%s\n' "$(os_release ID)" "$(os_release ID_LIKE)" \
    "$(os_release PRETTY_NAME)"
  printf 'systemd=%s\nsudo=%s\n' "$([[ -d /run/systemd/system ]] && echo yes || echo no)" "$sudo"
  if [[ -f "$AGENT_BIN" ]]; then
    printf 'agent_sha256=%s\n' "$(sha256sum "$AGENT_BIN" | cut -d' ' -f1)"
    printf 'agent_version=%s\n' "$("$AGENT_BIN" --version 2>/dev/null | head -n 1 || true)"
  fi
  printf 'agent_active=%s\n' "$(systemctl is-active "$UNIT_NAME" 2>/dev/null || true)"
}

# --- steps ------------------------------------------------------------------------------------

step_packages() {
  log "step 1/8: packages"
  command -v curl >/dev/null || apt_install curl ca-certificates
  if ! command -v docker >/dev/null; then
    install_docker
  elif docker compose version >/dev/null 2>&1; then
    log "docker and the compose plugin are installed"
  else
    # The agent speaks to the engine's API and needs no compose CLI; a distribution's docker
    # (Debian's docker.io) is kept as it is rather than replaced by Docker's packages.
    log "docker is installed, without the compose plugin (clawops does not need it; for \
\`docker compose\` by hand: apt-get install docker-compose-plugin or docker-compose)"
  fi
  command -v git >/dev/null || apt_install git
  command -v setfacl >/dev/null || apt_install acl
  log "git and acl are installed"
}

# install_docker: Docker's own repository (the guide's Docker 28+ with BuildKit and the compose
# plugin), added the documented way with its signing key checked against the published fingerprint.
install_docker() {
  command -v gpg >/dev/null || apt_install gnupg ca-certificates
  curl -fsSL --proto '=https' --retry 3 -o "$work/docker.asc" \
    https://download.docker.com/linux/debian/gpg
  local fpr codename
  fpr=$(gpg --show-keys --with-colons "$work/docker.asc" | awk -F: '$1 == "fpr" { print $10; exit }')
  [[ "$fpr" == "$DOCKER_KEY_FPR" ]] ||
    fail "Docker's apt signing key has fingerprint '$fpr', expected $DOCKER_KEY_FPR; not installing"
  install -d -m 0755 /etc/apt/keyrings
  install -m 0644 "$work/docker.asc" /etc/apt/keyrings/docker.asc
  codename=$(os_release VERSION_CODENAME)
  printf 'deb [arch=%s signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian %s stable\n' \
    "$(dpkg --print-architecture)" "$codename" >/etc/apt/sources.list.d/docker.list
  apt_updated=0
  apt_install docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
  systemctl enable --now docker.service
  changed "installed Docker from Docker's apt repository"
}

step_users() {
  log "step 3/8: users and directories"
  getent group docker >/dev/null || { groupadd --system docker && changed "created group docker"; }
  if ! getent passwd clawops >/dev/null; then
    useradd --system --user-group --groups docker --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "clawops agent" clawops
    changed "created system user clawops (groups: clawops docker)"
    restart_reasons+=("user created")
  elif ! id -nG clawops | tr ' ' '\n' | grep -qx docker; then
    usermod -aG docker clawops
    changed "added clawops to the docker group"
    restart_reasons+=("docker group added")
  fi
  if ! getent passwd "$owner" >/dev/null; then
    # The account `gcloud compute ssh` logs in as (it adopts an existing account of that name).
    useradd --create-home --user-group --shell /bin/bash "$owner"
    changed "created user $owner (owner of the OpenClaw checkout)"
  fi
  home=$(getent passwd "$owner" | cut -d: -f6)
  if [[ ! -d "$home" ]]; then
    # OS Login accounts get their home at first login; the checkout needs it now.
    install -d -o "$owner" -g "$(id -gn "$owner")" -m 0700 "$home"
    changed "created $home for $owner"
  fi
  repo=${repo:-$home/openclaw}
  ensure_dir "$CONF_DIR" root clawops 0750
  ensure_dir "$STATE_DIR" clawops clawops 0750
}

# step_agent_binary: fetches the new agent, checks its sha256 and that it runs here, and stages
# it as $AGENT_BIN.new; step_service puts it in place once it accepted the configuration.
step_agent_binary() {
  log "step 4/8: agent binary $AGENT_BIN"
  installed_sha=""
  kept="no agent is installed"
  if [[ -f "$AGENT_BIN" ]]; then
    installed_sha=$(sha256sum "$AGENT_BIN" | cut -d' ' -f1)
    kept="keeping the installed agent (sha256 $installed_sha)"
  fi
  if [[ -z "$agent_sha" ]]; then
    log "no agent given (no clawops-agent-url); \`clawops install\` from your machine installs one"
    return
  fi
  if [[ "$installed_sha" == "$agent_sha" ]]; then
    log "agent is up to date (sha256 $agent_sha); not replacing it"
    return
  fi
  local from=$agent_url sha_from=clawops-agent-sha256 got version
  if [[ -n "$agent_file" ]]; then
    from="the uploaded $agent_file"
    sha_from=--agent-sha256
    if ! cp -- "$agent_file" "$work/agent"; then
      problem "cannot read $from; $kept"
      return
    fi
  elif ! curl -fsSL --proto '=https,http' --retry 3 --retry-connrefused --connect-timeout 10 \
    -o "$work/agent" "$agent_url"; then
    problem "cannot download $agent_url; $kept"
    return
  fi
  got=$(sha256sum "$work/agent" | cut -d' ' -f1)
  if [[ "$got" != "$agent_sha" ]]; then
    problem "checksum mismatch for $from: expected $agent_sha ($sha_from), got $got; $kept"
    return
  fi
  install -o root -g root -m 0755 "$work/agent" "$AGENT_BIN.new"
  if ! version=$("$AGENT_BIN.new" --version 2>&1) || [[ "$version" != "clawops-agent "* ]]; then
    rm -f "$AGENT_BIN.new"
    problem "the new agent does not run here (\`clawops-agent --version\`: ${version:0:200}); $kept"
    return
  fi
  staged=1
  log "staged $version (sha256 $agent_sha) as $AGENT_BIN.new"
}

step_config() {
  log "step 5/8: configuration in $CONF_DIR"
  local listen=""
  [[ -z "$listen_port" ]] || listen="listen = \"127.0.0.1:$listen_port\""$'\n'
  if write_once "$CONFIG" root clawops 0640 <<CONFIG; then
# clawops agent configuration, written once by clawops' provisioning script from its settings.
# It is yours now: the script never overwrites it. After editing, check and apply it with
#   sudo -u clawops clawops-agent check-config --config $CONFIG
#   sudo systemctl restart $UNIT_NAME
# Moving the checkout? Update $GITCONFIG and $DROPIN too.
${listen}[app]
owner = "$owner"
repo = "$repo"
branch = "$branch"
service = "$service"
CONFIG
    restart_reasons+=("config written")
  fi
  if write_once "$GITCONFIG" root clawops 0640 <<GITCONFIG; then
# Git configuration of the clawops agent only (GIT_CONFIG_GLOBAL in its unit), written once by
# clawops' provisioning script; yours to edit. The checkout belongs to $owner and git runs as
# clawops, so git's ownership check is told that this one repository is trusted. A private
# remote's credentials go here too, e.g. [core] sshCommand = ssh -i /etc/clawops/deploy_key
# (a key owned by clawops, mode 0600).
[safe]
	directory = $repo
GITCONFIG
    restart_reasons+=("gitconfig written")
  fi
  if [[ ! -e "$TOKEN" ]]; then
    # 32 random bytes as hex. The agent refuses a token file that group or others can read.
    od -An -vtx1 -N32 /dev/urandom | tr -d ' \n' >"$work/token"
    install_file "$work/token" "$TOKEN" clawops clawops 0600
    changed "generated the API token $TOKEN (clawops 0600); fetch it with \`sudo cat $TOKEN\`"
    restart_reasons+=("token generated")
  elif [[ "$(stat -c '%U:%G %a' "$TOKEN")" != "clawops:clawops 600" ]]; then
    chown clawops:clawops "$TOKEN"
    chmod 0600 "$TOKEN"
    changed "fixed owner/mode of $TOKEN (clawops:clawops 600)"
    restart_reasons+=("token mode fixed")
  else
    log "token $TOKEN exists (clawops 0600); keeping it"
  fi
}

# share_tree DIR: git runs as clawops in a checkout that belongs to $owner (see the unit's
# comments). Default POSIX ACLs give both users rwX on everything created later, whatever the
# creator's umask, so a `git pull` by $owner does not lock the agent out and vice versa.
share_tree() {
  local have acl="u:clawops:rwX,u:$owner:rwX" default_acl="d:u:clawops:rwX,d:u:$owner:rwX"
  have=$(getfacl -p --omit-header "$1" 2>/dev/null || true)
  if grep -q '^default:user:clawops:rwx' <<<"$have" &&
    grep -q "^default:user:$owner:rwx" <<<"$have"; then
    log "$1 is shared with clawops already"
    return
  fi
  setfacl -R -P -m "$acl" "$1"
  find "$1" -type d -exec setfacl -m "$default_acl" {} +
  changed "shared $1 with clawops (ACL $acl, default ACL on directories)"
}

# ensure_traverse DIR: clawops may pass through DIR and every directory above it (x only).
ensure_traverse() {
  local parent
  parent=$(dirname "$1")
  [[ "$parent" == "$1" ]] || ensure_traverse "$parent"
  if ! runuser -u clawops -- test -x "$1"; then
    setfacl -m u:clawops:x "$1"
    changed "let clawops traverse $1 (ACL u:clawops:x; nothing in it becomes listable)"
  fi
}

step_checkout() {
  log "step 6/8: checkout $repo shared with the agent"
  local dir
  for dir in "$repo" "$home/.openclaw"; do
    if [[ ! -e "$dir" ]]; then
      # Created empty so the ACLs are inherited by what `git clone` / the gateway put in it.
      install -d -o "$owner" -g "$(id -gn "$owner")" \
        -m "$([[ $dir == "$repo" ]] && echo 0755 || echo 0700)" "$dir"
      changed "created $dir (owner $owner)"
    fi
    ensure_traverse "$(dirname "$dir")"
    share_tree "$dir"
  done
  [[ -z "$(ls -A "$repo")" ]] || return 0
  if [[ -z "$repo_url" ]]; then
    log "$repo is empty: clone OpenClaw into it as $owner (git clone URL $repo)"
  elif runuser -u "$owner" -- env HOME="$home" git clone --quiet --branch "$branch" -- \
    "$repo_url" "$repo"; then
    changed "cloned $repo_url (branch $branch) into $repo as $owner"
  else
    problem "git clone of $repo_url into $repo failed; clone it as $owner and run this again"
  fi
}

step_unit() {
  log "step 7/8: systemd unit $UNIT"
  local unit_changed=0
  if [[ -n "$unit_src" ]]; then
    if cmp -s "$unit_src" "$UNIT"; then
      log "unit is up to date"
    else
      install_file "$unit_src" "$UNIT" root root 0644
      changed "installed $UNIT"
      unit_changed=1
    fi
  elif [[ -z "$agent_sha" ]]; then
    # No agent in the metadata: `clawops install` brings the agent and its unit.
    log "no clawops-agent-unit in the metadata; the unit comes with \`clawops install\`"
  elif [[ -f "$UNIT" ]]; then
    problem "metadata attribute clawops-agent-unit is not set; keeping the installed $UNIT"
  else
    problem "metadata attribute clawops-agent-unit is not set and no unit is installed; set it \
with --metadata-from-file clawops-agent-unit=deploy/clawops-agent.service"
  fi
  upgrade_dropin
  if write_once "$DROPIN" root root 0644 < <(dropin); then
    unit_changed=1
  fi
  if [[ $unit_changed == 1 ]]; then
    systemctl daemon-reload
    log "systemctl daemon-reload"
    restart_reasons+=("unit changed")
  fi
  if [[ -f "$UNIT" ]] && ! systemctl is-enabled --quiet "$UNIT_NAME"; then
    systemctl enable "$UNIT_NAME"
    changed "enabled $UNIT_NAME"
  fi
}

# dropin: the unit's per-VM paths. /home is an empty tmpfs for the agent but for the checkout
# and the gateway's state, bound in read-write: nothing else of any user's home is visible.
dropin() {
  cat <<DROPIN
# Written once by clawops' provisioning script; yours to edit (then: systemctl daemon-reload).
# The agent sees no home directory but the checkout and the gateway's state, and may write only
# there beyond $STATE_DIR (snapshots before updates are restored there). '-': may not exist yet.
[Service]
ProtectHome=tmpfs
BindPaths=-$repo -$home/.openclaw
ReadWritePaths=-$repo -$home/.openclaw
DROPIN
}

# upgrade_dropin: a drop-in exactly as an earlier version wrote it (home read-only, not hidden)
# is ours, untouched by the operator, and is replaced; an edited one is left alone.
upgrade_dropin() {
  [[ -f "$DROPIN" ]] || return 0
  cmp -s "$DROPIN" - <<OLD || return 0
# Written once by the clawops startup script; yours to edit (then: systemctl daemon-reload).
# Beyond $STATE_DIR, the agent may write only to the checkout and the gateway's state
# (snapshots before updates are restored from there). '-' : may not exist yet.
[Service]
ReadWritePaths=-$repo -$home/.openclaw
OLD
  dropin >"$work/dropin"
  install_file "$work/dropin" "$DROPIN" root root 0644
  changed "updated $DROPIN: the agent now sees no home directory but the checkout and ~/.openclaw"
  unit_changed=1
}

# agent_up: within 20 s the unit is active and the agent answers on its port. Without systemd
# as PID 1 (a container image being prepared) no unit really runs: the unit's state is all.
agent_up() {
  local addr host port _
  addr=$(sed -n 's/^listen[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | head -n 1)
  addr=${addr:-127.0.0.1:18777}
  port=${addr##*:}
  host=${addr%:*}
  host=${host#[}
  host=${host%]}
  for _ in $(seq 40); do
    sleep 0.5
    systemctl is-active --quiet "$UNIT_NAME" || continue
    [[ -d /run/systemd/system ]] || return 0
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
  done
  return 1
}

# config_accepted BINARY: the agent BINARY accepts the configuration and can read its token.
config_accepted() {
  local out
  if ! out=$(runuser -u clawops -- "$1" check-config --config "$CONFIG" 2>&1); then
    problem "$CONFIG is not valid, not (re)starting the agent${staged:+ and not installing the \
new one}: $out"
    return 1
  elif grep -q PROBLEM <<<"$out"; then
    problem "the agent cannot use its token: $(grep PROBLEM <<<"$out")"
    return 1
  fi
  log "configuration checked (clawops-agent check-config as clawops)"
}

# put_staged_agent_in_place: the staged agent replaces the installed one (a rename), which is
# kept as $AGENT_BIN.prev until the new one is up.
put_staged_agent_in_place() {
  [[ -z "$installed_sha" ]] || ln -f "$AGENT_BIN" "$AGENT_BIN.prev"
  mv -f "$AGENT_BIN.new" "$AGENT_BIN"
  changed "installed agent sha256 $agent_sha${installed_sha:+ (replaces $installed_sha)}"
  restart_reasons+=("new agent binary")
}

# put_previous_agent_back: the new agent did not come up; the one that ran before runs again.
put_previous_agent_back() {
  mv -f "$AGENT_BIN.prev" "$AGENT_BIN"
  systemctl restart "$UNIT_NAME"
  if agent_up; then
    problem "the new agent (sha256 $agent_sha) did not come up; put the previous one \
(sha256 $installed_sha) back, and it is running again"
  else
    problem "the new agent (sha256 $agent_sha) did not come up, and neither did the previous \
one (sha256 $installed_sha) put back in its place; see \`journalctl -u $UNIT_NAME\`"
  fi
}

step_service() {
  log "step 8/8: agent service"
  local candidate=$AGENT_BIN action=""
  [[ -z "$staged" ]] || candidate=$AGENT_BIN.new
  if [[ ! -x "$candidate" ]]; then
    if [[ -n "$agent_sha" ]]; then
      problem "no agent installed at $AGENT_BIN; not starting $UNIT_NAME"
    else
      log "no agent installed at $AGENT_BIN; not starting $UNIT_NAME"
    fi
    return
  fi
  if ! config_accepted "$candidate"; then
    rm -f "$AGENT_BIN.new"
    return
  fi
  [[ -z "$staged" ]] || put_staged_agent_in_place
  [[ -f "$UNIT" ]] || return 0
  if ((${#restart_reasons[@]} > 0)); then
    action=restart
    changed "restarting $UNIT_NAME: $(printf '%s, ' "${restart_reasons[@]}" | sed 's/, $//')"
  elif ! systemctl is-active --quiet "$UNIT_NAME"; then
    action=start
    changed "$UNIT_NAME is not running; starting it"
  else
    log "$UNIT_NAME is running and nothing changed; not restarting it"
    return
  fi
  systemctl "$action" "$UNIT_NAME"
  if agent_up; then
    log "$UNIT_NAME is active"
    rm -f "$AGENT_BIN.prev"
    return
  fi
  if command -v journalctl >/dev/null; then
    journalctl -u "$UNIT_NAME" -n 20 --no-pager || true
  fi
  if [[ -n "$staged" && -f "$AGENT_BIN.prev" ]]; then
    put_previous_agent_back
  else
    problem "$UNIT_NAME did not stay up after $action; see \`journalctl -u $UNIT_NAME\`"
  fi
}

finish() {
  if ((${#problems[@]} > 0)); then
    log "finished with ${#problems[@]} problem(s):"
    local p
    for p in "${problems[@]}"; do log "  - $p"; done
    exit 1
  fi
  local running="no agent installed yet"
  [[ ! -f "$AGENT_BIN" ]] || running="agent sha256 $(sha256sum "$AGENT_BIN" | cut -d' ' -f1)"
  if ((${#changes[@]} == 0)); then
    log "done: nothing changed; $running (settings: $CONFIG)"
  else
    log "done: ${#changes[@]} change(s); $running (settings: $CONFIG)"
  fi
}

main() {
  case "${1:-}" in
    "") ;;
    probe) probe && return ;;
    install)
      mode=install
      shift
      settings_from_args "$@"
      validate_settings
      check_host
      ;;
    help | -h | --help) usage && return ;;
    *) usage >&2 && fail "unknown mode '$1'" ;;
  esac
  [[ $EUID == 0 ]] || fail "run this as root (sudo)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  exec 9>/run/clawops-startup.lock
  flock -w 900 9 || fail "another run of this script holds /run/clawops-startup.lock"
  if [[ $mode == install ]]; then
    log "start (settings from the command line)"
  else
    log "start (metadata server $METADATA_URL)"
  fi
  step_packages
  if [[ $mode == install ]]; then
    log "step 2/8: settings"
  else
    log "step 2/8: metadata attributes"
    settings_from_metadata
    validate_settings
  fi
  log "agent ${agent_url:-${agent_file:-(none given)}}${agent_sha:+ (sha256 $agent_sha)}; owner $owner; \
branch $branch; service $service"
  step_users
  step_agent_binary
  step_config
  step_checkout
  step_unit
  step_service
  finish
}

staged="" installed_sha="" kept="" home=""
main "$@"
