# shellcheck shell=bash
# Test harness for deploy/tests/run.sh: counters, one line per check, helpers.

PASSED=0
FAILED=0

pass() {
  PASSED=$((PASSED + 1))
  printf 'ok   %s\n' "$1"
}

# failed NAME [DETAIL...]: DETAIL lines are indented under the check's name.
failed() {
  FAILED=$((FAILED + 1))
  printf 'FAIL %s\n' "$1"
  shift
  local line
  for line in "$@"; do
    printf '%s\n' "$line" | sed 's/^/     | /'
  done
}

# check NAME CMD...: passes when CMD succeeds; shows its output when it does not.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    failed "$name" "$out"
  fi
}

# check_within NAME SECS CMD...: like check, retrying every 3 s for up to SECS seconds (for
# what comes up on its own, as a service after a reboot).
check_within() {
  local name=$1 deadline=$((SECONDS + $2)) out
  shift 2
  until out=$("$@" 2>&1); do
    if ((SECONDS >= deadline)); then
      failed "$name" "$out"
      return
    fi
    sleep 3
  done
  pass "$name"
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    failed "$1" "expected: $2" "actual:   $3"
  fi
}

# expect_contains NAME HAYSTACK NEEDLE
expect_contains() {
  if [[ "$2" == *"$3"* ]]; then
    pass "$1"
  else
    failed "$1" "missing: $3" "in:" "$2"
  fi
}

# expect_not_contains NAME HAYSTACK NEEDLE
expect_not_contains() {
  if [[ "$2" != *"$3"* ]]; then
    pass "$1"
  else
    failed "$1" "unexpected: $3" "in:" "$2"
  fi
}

section() {
  printf '\n== %s\n' "$1"
}

summary() {
  printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"
  [[ $FAILED == 0 ]]
}

# need_cmd COMMAND DEBIAN_PACKAGE: installs the package when the command is missing.
need_cmd() {
  command -v "$1" >/dev/null && return 0
  echo "installing $2 (for $1)"
  if ! { apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null; }; }; then
    echo "cannot install $2; install it with \`apt-get install $2\`" >&2
    return 1
  fi
}
