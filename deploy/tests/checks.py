#!/usr/bin/env python3
"""Checks of deploy/tests/run.sh that are easier in Python: the gcloud argv that
create-vm.sh prints, and the GitHub Actions workflow. Prints "ok   NAME" / "FAIL NAME" lines
and, last, "counts PASSED FAILED".

  checks.py create-vm DRY_RUN_OUTPUT DEPLOY_DIR PROJECT ZONE NAME OWNER AGENT_URL SHA IAP
  checks.py same-argv DRY_RUN_OUTPUT RECORDED_GCLOUD_CALLS
  checks.py workflow WORKFLOW_YAML README CLAWOPS_BINARY
"""
import os
import shlex
import subprocess
import sys

PASSED = 0
FAILED = 0


def check(name: str, ok: bool, detail: str = "") -> bool:
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED += 1
        print(f"FAIL {name}")
        for line in detail.splitlines():
            print(f"     | {line}")
    return ok


def flags(argv: list[str]) -> dict[str, str]:
    """--key=value and bare --switch arguments of a gcloud command."""
    out = {}
    for arg in argv:
        if arg.startswith("--"):
            key, _, value = arg.partition("=")
            out[key] = value
    return out


def create_vm(output: str, deploy: str, project: str, zone: str, name: str, owner: str,
              agent_url: str, sha: str, iap: str) -> None:
    with open(output, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line.startswith("gcloud ")]
    commands = [shlex.split(line) for line in lines]
    check("dry run prints gcloud commands", len(commands) >= 4, "\n".join(lines))
    creates = [c for c in commands if c[1:4] == ["compute", "instances", "create"]]
    if not check("exactly one instances create", len(creates) == 1, "\n".join(lines)):
        return
    vm = creates[0]
    f = flags(vm)
    sa = f"clawops-vm@{project}.iam.gserviceaccount.com"
    expected = {
        "--project": project,
        "--zone": zone,
        "--machine-type": "e2-small",
        "--image-family": "debian-12",
        "--image-project": "debian-cloud",
        "--boot-disk-size": "20GB",
        "--boot-disk-type": "pd-balanced",
        "--service-account": sa,
        "--scopes": "logging-write,monitoring-write",
    }
    for key, value in expected.items():
        check(f"instance {key}={value}", f.get(key) == value, f"got {f.get(key)!r}")
    check("instance name", vm[4] == name, f"got {vm[4]!r}")
    check("no broad scope (cloud-platform)", "cloud-platform" not in f.get("--scopes", ""))
    check("no public address tricks (no --address, no extra ports)",
          "--address" not in f and not any("18789" in a or "18777" in a for c in commands for a in c),
          "\n".join(lines))
    from_file = dict(kv.split("=", 1) for kv in f.get("--metadata-from-file", "").split(","))
    check("startup-script from deploy/startup-script.sh",
          os.path.realpath(from_file.get("startup-script", "")) ==
          os.path.realpath(os.path.join(deploy, "startup-script.sh")), str(from_file))
    if agent_url:
        check("unit as metadata clawops-agent-unit",
              os.path.realpath(from_file.get("clawops-agent-unit", "")) ==
              os.path.realpath(os.path.join(deploy, "clawops-agent.service")), str(from_file))
    else:
        check("no agent URL: no unit in the metadata (clawops install brings it)",
              "clawops-agent-unit" not in from_file, str(from_file))
    metadata = dict(kv.split("=", 1) for kv in f.get("--metadata", "").split(","))
    agent = {"clawops-agent-url": agent_url, "clawops-agent-sha256": sha} if agent_url else {}
    want = {
        **agent,
        "clawops-repo-owner": owner,
        "clawops-repo-branch": "main",
        "clawops-service": "openclaw-gateway",
        "clawops-repo-url": "https://github.com/openclaw/openclaw.git",
        "block-project-ssh-keys": "TRUE",
    }
    check("metadata attributes", metadata == want, f"got  {metadata}\nwant {want}")
    script_attrs = open(os.path.join(deploy, "startup-script.sh"), encoding="utf-8").read()
    missing = [k for k in want if k.startswith("clawops-") and k not in script_attrs]
    check("the startup script reads every clawops-* attribute", not missing, str(missing))

    rules = [c for c in commands if c[1:4] == ["compute", "firewall-rules", "create"]]
    ranges = "35.235.240.0/20" if iap == "1" else "0.0.0.0/0"
    rf = flags(rules[0]) if len(rules) == 1 else {}
    check("one firewall rule", len(rules) == 1, "\n".join(lines))
    check("firewall opens SSH only", rf.get("--rules") == "tcp:22" and rf.get("--action") == "ALLOW"
          and rf.get("--direction") == "INGRESS", str(rf))
    check(f"firewall source {ranges}", rf.get("--source-ranges") == ranges, str(rf))
    check("firewall targets the VM's tag only",
          rf.get("--target-tags") == f.get("--tags") == "clawops-gateway", str(rf))

    roles = sorted(flags(c).get("--role", "") for c in commands
                   if c[1:3] == ["projects", "add-iam-policy-binding"])
    check("service account roles: log and metric writer only",
          roles == ["roles/logging.logWriter", "roles/monitoring.metricWriter"], str(roles))
    check("service account created", any(c[1:4] == ["iam", "service-accounts", "create"]
                                         and c[4] == "clawops-vm" for c in commands))
    with open(output, encoding="utf-8") as fh:
        text = fh.read()
    check("prints the next command",
          f'clawops --via "gcloud://{name}?zone={zone}&project={project}"' in text, text)
    next_step = "token fetch" if agent_url else "install --output"
    check(f"the next command is `{next_step}`", next_step in text, text)


def same_argv(dry_run: str, recorded: str) -> None:
    """The commands a real run executes are exactly those the dry run printed, in order."""
    def gcloud_lines(path: str) -> list[list[str]]:
        with open(path, encoding="utf-8") as f:
            return [shlex.split(x) for x in f.read().splitlines() if x.startswith("gcloud ")]

    printed = gcloud_lines(dry_run)
    executed = gcloud_lines(recorded)
    lookups = [c for c in executed if "describe" in c or c[1:3] == ["config", "get-value"]]
    mutating = [c for c in executed if c not in lookups]
    check("real run executes exactly the dry run's argv", mutating == printed,
          "printed:\n" + "\n".join(map(str, printed)) + "\nexecuted:\n" +
          "\n".join(map(str, mutating)))
    check("real run looks before creating (service account, firewall rule)",
          sum("describe" in c for c in lookups) == 2, "\n".join(map(str, lookups)))


GLOBAL_WITH_VALUE = {"--via", "--token-file", "--addr", "--agent-port", "--ssh-option", "-t",
                     "--target"}
SEPARATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "<"}


def clawops_calls(script: str) -> list[list[str]]:
    """argv (after `clawops`) of each clawops command in a shell script."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        if line.strip().startswith("#") or "clawops" not in line:
            continue
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "clawops" and (i == 0 or words[i - 1] in SEPARATORS):
                argv = []
                for w in words[i + 1:]:
                    if w in SEPARATORS:
                        break
                    argv.append(w)
                calls.append(argv)
    return calls


def workflow(path: str, readme: str, binary: str) -> None:
    import yaml

    with open(path, encoding="utf-8") as f:
        try:
            wf = yaml.safe_load(f)
        except yaml.YAMLError as e:
            check("workflow parses as YAML", False, str(e))
            return
    check("workflow parses as YAML", isinstance(wf, dict))
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as true
    check("runs on push to main", "main" in (on or {}).get("push", {}).get("branches", []), str(on))
    check("may request an OIDC token (id-token: write)",
          wf.get("permissions", {}).get("id-token") == "write", str(wf.get("permissions")))
    steps = [s for job in wf.get("jobs", {}).values() for s in job.get("steps", [])]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps if "uses" in s}
    check("no third-party action: only GitHub's own (actions/…)",
          all(u.startswith("actions/") for u in uses), str(list(uses)))
    scripts = "\n".join(s.get("run", "") for s in steps)
    check("workload identity federation through gcloud, no key file",
          "workload-identity-pools create-cred-config" in scripts
          and "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in scripts and "--cred-file" in scripts
          and "credentials_json" not in scripts and "private_key" not in scripts, scripts)
    check("SSH through IAP", "--tunnel-through-iap" in scripts, scripts)
    upload = uses.get("actions/upload-artifact", {})
    check("uploads the result even when the update failed",
          upload.get("if") == "always()"
          and upload.get("with", {}).get("path") == "update-result.json", str(upload))
    check("runs clawops update --json through gcloud:// with IAP",
          'clawops --via "gcloud://${VM}?zone=${ZONE}&project=${PROJECT}&iap=true" update --json '
          '"${accept[@]}" > update.json' in scripts, scripts)
    check("--accept-changes only from a person's manual run",
          "accept=(--accept-changes)" in scripts
          and "github.event_name == 'workflow_dispatch' && inputs.accept_changes"
          in str(wf.get("jobs")), scripts)
    check("the artifact and the summary carry no log lines",
          "select(.type != \"log\") | del(.last_logs)" in scripts
          and "cat update.json" not in scripts, scripts)
    check("fails the job with clawops' exit status", 'exit "$status"' in scripts, scripts)
    jobs = list(wf.get("jobs", {}).values())
    check("deploys from a protected environment",
          all(j.get("environment") for j in jobs), str(jobs))

    calls = clawops_calls(scripts)
    check("finds the clawops commands it uses", len(calls) >= 2, str(calls))
    with open(readme, encoding="utf-8") as f:
        blocks = f.read().split("```")[1::2]  # the fenced code blocks
    readme_calls = clawops_calls("\n".join(b for b in blocks if b.startswith("sh")))
    check("finds the clawops commands deploy/README.md uses", len(readme_calls) >= 3,
          str(readme_calls))
    check_cli(calls, binary, "workflow")
    check_cli(readme_calls, binary, "README")


def check_cli(calls: list[list[str]], binary: str, where: str) -> None:
    """Every subcommand and option in `calls` exists in the CLI (`clawops <cmd> --help`)."""
    try:
        top = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        check(f"{binary} runs", False, str(e))
        return
    if not check(f"{where}: clawops --help shows a usage (the CLI has its commands)",
                 top.returncode == 0 and "Usage:" in top.stdout,
                 "the client CLI is not ready: `clawops --help` printed no usage "
                 f"(exit {top.returncode}): {top.stdout}{top.stderr}\n"
                 "this check passes once client/src defines the commands the workflow uses"):
        return
    unique = []
    for argv in calls:
        if argv not in unique:
            unique.append(argv)
    seen = set()
    for argv in unique:
        shown = "clawops " + " ".join(argv)
        if argv == ["--version"]:
            r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
            check(f"{where}: `{shown}` works", r.returncode == 0 and r.stdout.strip() != "",
                  r.stderr)
            continue
        globals_, sub, sub_flags = [], None, []
        i = 0
        while i < len(argv):
            a = argv[i]
            if sub is None and a in GLOBAL_WITH_VALUE:
                globals_.append(a)
                i += 2
                continue
            if a.startswith("-"):
                (globals_ if sub is None else sub_flags).append(a.split("=")[0])
            elif sub is None:
                sub = a
            i += 1
        for g in globals_:
            if g not in seen:
                seen.add(g)
                check(f"{where}: `clawops --help` has {g}", g in top.stdout, top.stdout)
        if sub is None:
            check(f"{where}: `{shown}` names a subcommand", False)
            continue
        r = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, timeout=60)
        check(f"{where}: `clawops {sub} --help` works", r.returncode == 0 and "Usage:" in r.stdout,
              r.stdout + r.stderr)
        for fl in sub_flags:
            check(f"{where}: `clawops {sub} --help` has {fl}", fl in r.stdout, r.stdout)


def main() -> None:
    mode = sys.argv[1]
    if mode == "create-vm":
        create_vm(*sys.argv[2:11])
    elif mode == "same-argv":
        same_argv(sys.argv[2], sys.argv[3])
    elif mode == "workflow":
        workflow(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
    print(f"counts {PASSED} {FAILED}")


if __name__ == "__main__":
    main()
