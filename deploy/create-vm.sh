#!/bin/bash
# Creates the VM of the OpenClaw GCP guide, provisioned by deploy/startup-script.sh at every
# boot: e2-small, Debian 12, 20 GB balanced disk, a service account that may only write logs and
# metrics, SSH as the only way in (the gateway and the agent listen on 127.0.0.1 and are
# reached through SSH tunnels; no firewall rule opens their ports).
#
#   deploy/create-vm.sh --project my-project [--dry-run]
#       then `clawops install` puts the agent on it from your machine;
#   deploy/create-vm.sh --project my-project \
#     --agent-url https://…/clawops-agent-x86_64-linux --agent-sha256 <sha256>
#       the startup script downloads the agent itself at every boot (unattended rebuilds).
#
# --dry-run prints the exact gcloud commands, one per line, shell-quoted, instead of running
# them. Without it the commands run in that order; the service account and firewall rule are
# created only if missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
usage: $0 [options]

  --project P         GCP project (default: gcloud config get-value project)
  --zone Z            zone (default: us-central1-a)
  --name NAME         VM name (default: openclaw-gateway)
  --machine-type T    machine type (default: e2-small; e2-micro's 1 GB runs out building OpenClaw)
  --owner USER        account that owns the OpenClaw checkout on the VM; use the name
                      \`gcloud compute ssh\` logs you in as (default: your local user name, as
                      gcloud does)
  --repo-url URL      cloned into ~OWNER/openclaw at first boot
                      (default: https://github.com/openclaw/openclaw.git; '' to clone it yourself)
  --branch B          branch the agent deploys (default: main)
  --service S         compose service the agent updates (default: openclaw-gateway)
  --ssh-from-iap      allow SSH only from Google's IAP range 35.235.240.0/20 (connect with
                      --tunnel-through-iap); default: SSH from anywhere, key-authenticated
  --agent-url URL     let the startup script install the agent from this https URL at every
                      boot (default: none; install it with \`clawops install\`)
  --agent-sha256 S    the sha256 of what --agent-url serves (required with it)
  --network N         VPC network (default: default)
  --dry-run           print the gcloud commands instead of running them
  -h, --help          this help
EOF
}

die() {
  printf 'create-vm.sh: %s\n' "$*" >&2
  exit 2
}

project="" zone=us-central1-a name=openclaw-gateway machine_type=e2-small
owner=$(id -un | tr '[:upper:]' '[:lower:]')
repo_url=https://github.com/openclaw/openclaw.git branch=main service=openclaw-gateway
agent_url="" agent_sha="" iap=0 network=default dry_run=0

while (($# > 0)); do
  case "$1" in
    --project | --zone | --name | --machine-type | --owner | --repo-url | --branch | --service | \
      --agent-url | --agent-sha256 | --network)
      (($# >= 2)) || die "$1 needs a value"
      case "$1" in
        --project) project=$2 ;;
        --zone) zone=$2 ;;
        --name) name=$2 ;;
        --machine-type) machine_type=$2 ;;
        --owner) owner=$2 ;;
        --repo-url) repo_url=$2 ;;
        --branch) branch=$2 ;;
        --service) service=$2 ;;
        --agent-url) agent_url=$2 ;;
        --agent-sha256) agent_sha=${2,,} ;;
        --network) network=$2 ;;
      esac
      shift 2
      ;;
    --ssh-from-iap) iap=1 && shift ;;
    --dry-run) dry_run=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown argument: $1" ;;
  esac
done

if [[ -n "$agent_url$agent_sha" ]]; then
  [[ "$agent_url" =~ ^https://[^[:space:],]+$ ]] ||
    die "--agent-url must be an https:// URL without commas (with --agent-sha256)"
  [[ "$agent_sha" =~ ^[0-9a-f]{64}$ ]] ||
    die "--agent-sha256 must be the 64 hex digits of \`sha256sum clawops-agent\`"
fi
if [[ -z "$project" ]]; then
  command -v gcloud >/dev/null && project=$(gcloud config get-value project 2>/dev/null || true)
  [[ -n "$project" ]] || die "no project: pass --project or run \`gcloud config set project P\`"
fi
[[ "$name" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "--name $name is not a valid VM name"
[[ "$owner" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] ||
  die "--owner $owner is not a valid Linux user name; pass --owner with the name you ssh as"
[[ "$branch" =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ ]] || die "--branch $branch is not a branch name"
[[ "$service" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--service $service is not a service name"
[[ "$repo_url" != *[,[:space:]]* ]] || die "--repo-url must not contain commas or spaces"
for f in startup-script.sh clawops-agent.service; do
  [[ -f "$here/$f" ]] || die "$here/$f is missing"
done
[[ "$here" != *,* ]] || die "the path $here contains a comma, which --metadata-from-file cannot take"

sa_name=clawops-vm
sa="$sa_name@$project.iam.gserviceaccount.com"
tag=clawops-gateway
if ((iap)); then
  rule=clawops-ssh-from-iap ranges=35.235.240.0/20
else
  rule=clawops-ssh ranges=0.0.0.0/0
fi
metadata="clawops-repo-owner=$owner,clawops-repo-branch=$branch,clawops-service=$service"
from_file="startup-script=$here/startup-script.sh"
if [[ -n "$agent_url" ]]; then
  # The startup script keeps the agent and its unit as the metadata says, at every boot.
  metadata+=",clawops-agent-url=$agent_url,clawops-agent-sha256=$agent_sha"
  from_file+=",clawops-agent-unit=$here/clawops-agent.service"
fi
[[ -z "$repo_url" ]] || metadata+=",clawops-repo-url=$repo_url"
# SSH keys of this VM only: gcloud compute ssh then adds keys to the instance, not the project
# (a project-wide key opens every VM, and CI's deploy account needs no project-wide rights).
metadata+=",block-project-ssh-keys=TRUE"

# quote ARG: ARG as the shell reads it back, single-quoted only when it has to be.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run ARGV...: prints the command (dry run) or runs it.
run() {
  if ((dry_run)); then
    local line="" arg
    for arg in "$@"; do line+="${line:+ }$(quote "$arg")"; done
    printf '%s\n' "$line"
  else
    printf '+ %s\n' "$*" >&2
    "$@"
  fi
}

# exists ARGV...: a describe command; in a dry run everything is created, so nothing exists.
exists() {
  ((dry_run == 0)) && "$@" >/dev/null 2>&1
}

if ((dry_run == 0)); then
  command -v gcloud >/dev/null || die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
fi

# A dedicated service account with no role beyond writing logs and metrics (the agent needs no
# Google API; the metadata server answers without credentials), and scopes to match, instead
# of the default compute account with the broad Editor role.
if ! exists gcloud iam service-accounts describe "$sa" --project="$project"; then
  run gcloud iam service-accounts create "$sa_name" --project="$project" \
    --display-name="clawops VM (writes logs and metrics only)"
fi
for role in roles/logging.logWriter roles/monitoring.metricWriter; do
  run gcloud projects add-iam-policy-binding "$project" --member="serviceAccount:$sa" \
    --role="$role" --condition=None --quiet
done

# SSH is the only port opened; the gateway (18789) and the agent (18777) stay on loopback.
if ! exists gcloud compute firewall-rules describe "$rule" --project="$project"; then
  run gcloud compute firewall-rules create "$rule" --project="$project" --network="$network" \
    --direction=INGRESS --action=ALLOW --rules=tcp:22 --source-ranges="$ranges" \
    --target-tags="$tag"
fi

run gcloud compute instances create "$name" --project="$project" --zone="$zone" \
  --machine-type="$machine_type" --network="$network" \
  --image-family=debian-12 --image-project=debian-cloud \
  --boot-disk-size=20GB --boot-disk-type=pd-balanced \
  --service-account="$sa" --scopes=logging-write,monitoring-write \
  --tags="$tag" --shielded-secure-boot --shielded-vtpm --shielded-integrity-monitoring \
  --metadata-from-file="$from_file" \
  --metadata="$metadata"

ssh_cmd="gcloud compute ssh $name --zone=$zone --project=$project"
via="gcloud://$name?zone=$zone&project=$project"
if ((iap)); then
  ssh_cmd+=" --tunnel-through-iap"
  via+="&iap=true"
fi
if [[ -n "$agent_url" ]]; then
  cat <<EOF
# Next: the first boot installs Docker, the agent and the checkout (2-4 minutes). Watch it:
#   $ssh_cmd -- sudo journalctl -u google-startup-scripts.service -f
# then fetch the agent's token and talk to it through SSH:
#   clawops --via "$via" token fetch --output ~/.config/clawops/tokens/$name
#   clawops --via "$via" --token-file ~/.config/clawops/tokens/$name status
EOF
else
  cat <<EOF
# Next: the first boot installs Docker and git and clones the checkout (2-4 minutes). Watch it:
#   $ssh_cmd -- sudo journalctl -u google-startup-scripts.service -f
# then install the agent from here (it waits for the first boot, and saves the agent's token):
#   clawops --via "$via" install --output ~/.config/clawops/tokens/$name
#   clawops --via "$via" --token-file ~/.config/clawops/tokens/$name up
EOF
fi
if ((iap)); then
  cat <<EOF
# The default network's rule default-allow-ssh also admits SSH from anywhere; delete it
# (gcloud compute firewall-rules delete default-allow-ssh --project=$project) to keep IAP only.
EOF
fi
