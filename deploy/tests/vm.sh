# shellcheck shell=bash
# A real Debian 12 VM under QEMU for deploy/tests/run.sh (sourced by run.sh: `run.sh vm`).
#
# The guest disk is a debootstrap'd bookworm (systemd, the Debian kernel, sshd, docker.io, git)
# made into an ext4 image with `mkfs.ext4 -d`, built once and cached by the hash of its recipe
# under $CLAWOPS_VM_CACHE (default /var/cache/clawops-test/vm-HASH/) with the kernel, the
# initrd and the test key pair. A run never writes to the cached image: it boots a qcow2
# overlay in $TMP, plus a small second disk with a bare git remote of the demo app
# (/srv/remote/openclaw.git, owned by alice).
#
# Network: QEMU's user-mode NIC with restrict=on and a single forward from 127.0.0.1:VM_PORT on
# the host to the guest's sshd; the guest has 10.0.2.15/24 and no default route, so it reaches
# nothing and nothing but the host's loopback reaches it. KVM is tried first only for as long
# as a working KVM guest takes to print its kernel banner; then software emulation (TCG).
#
# For the end-to-end flow (vm_flow), after vm_start:
#   VM_PORT, VM_KEY          host port forwarded to the guest's sshd; the private key of alice
#   VM_SSH                   array: the whole ssh command up to the destination, so that
#                            `"${VM_SSH[@]}" CMD` runs CMD in the guest as alice (these calls
#                            share one ControlMaster connection)
#   VM_SSH_OPTS              array: the ssh options alone (-i, -p, -o ...), no destination
#   VM_GIT_SSH               a GIT_SSH_COMMAND string for the guest (push to
#                            ssh://alice@127.0.0.1/srv/remote/openclaw.git)
#   VM_VIA                   array: clawops's --via ssh://alice@127.0.0.1:PORT and --ssh-option's
#                            (no connection sharing: clawops opens its own)
#   VM_DIR                   this run's VM directory ($TMP/vm): overlay, serial.log, qemu.log
#   VM_ACCEL                 kvm or tcg (decided once per run)
#   VM_BOOT_SSH_SECS, VM_BOOT_DOCKER_SECS   from QEMU's start until ssh answers / dockerd is active
#   vm_ssh CMD...            runs CMD in the guest (stdin passes through)
#   vm_ssh_quiet SECS CMD... the same without stdin and stderr, killed after SECS
#   vm_wait_docker SECS      waits until dockerd is active
#   vm_reboot                reboots the guest; sets VM_REBOOT_SECS (until ssh answers with a
#                            new boot id) and VM_REBOOT_DOCKER_SECS (until dockerd is active)
#   vm_stop                  powers the guest off (kills QEMU if it lingers); 1 if killed
#   vm_app_commit DIR VERSION MODE MESSAGE
#                            in a clone DIR of the remote: makes the demo gateway report
#                            VERSION and behave per MODE (ok, exit, never-ready), commits
#   vm_healthz_version SECS WANT   the version the gateway serves in the guest (polls for WANT)
#   vm_env_file              the operator's .env and ~/.openclaw for the demo's compose file
# vm_start must run in run.sh's own shell (not in $(...) or `check`): QEMU is killed when the
# shell that started it exits (PR_SET_PDEATHSIG), so no VM outlives the test, even on SIGKILL.
#
# Environment: CLAWOPS_VM_CACHE (cache root), CLAWOPS_VM_ACCEL=kvm|tcg (skip the probe),
# CLAWOPS_VM_SSH_TIMEOUT (seconds a boot may take until ssh answers, default 300).

VM_SUITE=bookworm
VM_MIRROR=http://deb.debian.org/debian
# dbus: systemctl for non-root users; ca-certificates and curl for the startup script; acl for
# its POSIX ACLs; procps for free(1).
VM_PACKAGES=systemd-sysv,dbus,linux-image-amd64,initramfs-tools,udev,kmod,openssh-server,iproute2,sudo,docker.io,git,ca-certificates,curl,acl,procps,less
VM_RECIPE=1 # bump when the guest should be rebuilt for a reason the hash cannot see
VM_DISK_SIZE=8G
VM_USER=alice
VM_UID=1000
VM_CMDLINE="root=/dev/vda rw console=ttyS0 apparmor=0 net.ifnames=1 mitigations=off"
VM_SSH_TIMEOUT=${CLAWOPS_VM_SSH_TIMEOUT:-300}

VM_PID=""
VM_DIR=""
VM_PORT=""
VM_KEY=""
VM_ACCEL=""
VM_CACHE=""
VM_SSH=()
VM_SSH_OPTS=()
VM_VIA=()
VM_GIT_SSH=""

# vm_rootfs_configure ROOT PUBKEY: everything the guest needs beyond debootstrap's packages.
vm_rootfs_configure() {
  local r=$1 pub=$2
  echo clawops-vm >"$r/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tclawops-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$r/etc/hosts"
  # No fsck at boot (pass 0): the disk is a throwaway overlay, and fsck is slow under TCG. The
  # remote's device may take minutes to show up on a busy host (udev under TCG); nofail keeps
  # the boot from waiting for it.
  cat >"$r/etc/fstab" <<'EOF'
/dev/vda      /            ext4  rw,errors=remount-ro                        0 0
LABEL=remote  /srv/remote  ext4  rw,nofail,x-systemd.device-timeout=10min    0 0
EOF
  mkdir -p "$r/srv/remote"
  # The virtio NIC (ens3 on QEMU's pc machine) by name pattern; no gateway: the guest has no
  # route beyond 10.0.2.0/24 (QEMU's restrict=on would drop such packets anyway).
  mkdir -p "$r/etc/systemd/network"
  cat >"$r/etc/systemd/network/10-vm.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
  : >"$r/etc/resolv.conf"
  chroot "$r" systemctl enable -q systemd-networkd.service
  # What would only spend the emulated CPU: timers (no network, no discard), gettys on a
  # display there is none of (the serial console keeps its getty), KVM and the PC speaker.
  chroot "$r" systemctl mask -q apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer e2scrub_reap.service getty@.service
  printf 'blacklist %s\n' kvm kvm_amd kvm_intel pcspkr >"$r/etc/modprobe.d/clawops-test.conf"
  # A small initrd (its unpacking and coldplug are much of the boot under TCG): the modules
  # for a virtio disk with ext4, nothing else.
  printf 'MODULES=list\nCOMPRESS=gzip\n' >"$r/etc/initramfs-tools/conf.d/clawops-test.conf"
  printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$r/etc/initramfs-tools/modules"
  unshare --mount --propagation private chroot "$r" \
    sh -c 'mount -t proc proc /proc && update-initramfs -u -k all' >/dev/null 2>&1 || return 1
  cat >"$r/etc/ssh/sshd_config.d/10-clawops-test.conf" <<'EOF'
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
  chroot "$r" ssh-keygen -A >/dev/null
  chroot "$r" useradd --create-home --shell /bin/bash --uid "$VM_UID" --user-group "$VM_USER"
  # '*' (no password) rather than useradd's '!' (locked): sshd refuses locked accounts.
  chroot "$r" usermod -p '*' "$VM_USER"
  install -d -m 700 -o "$VM_UID" -g "$VM_UID" "$r/home/$VM_USER/.ssh"
  install -m 600 -o "$VM_UID" -g "$VM_UID" "$pub" "$r/home/$VM_USER/.ssh/authorized_keys"
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$VM_USER" >"$r/etc/sudoers.d/$VM_USER"
  chmod 440 "$r/etc/sudoers.d/$VM_USER"
  chroot "$r" systemctl enable -q docker.service ssh.service
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc \
    "$r"/usr/share/man "$r"/usr/share/locale
}

# vm_disk_build DIR: debootstrap, configure, kernel + initrd + ext4 image + key pair into DIR.
vm_disk_build() {
  local dir=$1 rfs=$1/rootfs
  ssh-keygen -q -t ed25519 -N '' -C clawops-test-vm -f "$dir/id_ed25519" || return 1
  if ! debootstrap --variant=minbase --include="$VM_PACKAGES" "$VM_SUITE" "$rfs" "$VM_MIRROR" \
    >"$dir/debootstrap.log" 2>&1; then
    tail -n 20 "$dir/debootstrap.log"
    return 1
  fi
  vm_rootfs_configure "$rfs" "$dir/id_ed25519.pub" || return 1
  local kernel initrd
  kernel=$(find "$rfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
  initrd=$(find "$rfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
  if [[ -z "$kernel" || -z "$initrd" ]]; then
    echo "no kernel or initrd in $rfs/boot"
    return 1
  fi
  cp "$kernel" "$dir/vmlinuz" && cp "$initrd" "$dir/initrd.img" || return 1
  truncate -s "$VM_DISK_SIZE" "$dir/base.img" &&
    mkfs.ext4 -q -L clawops-root -d "$rfs" "$dir/base.img" || return 1
  rm -rf "$rfs"
}

# vm_recipe_key: the cache key, the hash of what vm_disk_build makes and how.
vm_recipe_key() {
  {
    printf '%s\n' "$VM_SUITE" "$VM_MIRROR" "$VM_PACKAGES" "$VM_RECIPE" "$VM_DISK_SIZE" \
      "$VM_USER" "$VM_UID"
    declare -f vm_rootfs_configure vm_disk_build
  } | sha256sum | cut -c1-16
}

# vm_disk: sets VM_CACHE to the cache directory of the guest (base.img, vmlinuz, initrd.img,
# id_ed25519), building it when it is not cached; sets VM_DISK_BUILT to the seconds a build
# took, or "" when it came from the cache.
vm_disk() {
  local base=${CLAWOPS_VM_CACHE:-/var/cache/clawops-test} key start
  key=$(vm_recipe_key)
  VM_CACHE=$base/vm-$key
  VM_DISK_BUILT=""
  mkdir -p "$base" || return 1
  start=$SECONDS
  local cached=""
  [[ -f "$VM_CACHE/ok" ]] && cached=1
  (
    # Two concurrent runs must not both spend minutes on debootstrap.
    flock -w 1800 8 || { echo "timed out waiting for $base/vm.lock"; exit 1; }
    [[ -f "$VM_CACHE/ok" ]] && exit 0
    need_cmd debootstrap debootstrap && need_cmd mkfs.ext4 e2fsprogs || exit 1
    tmp=$(mktemp -d "$base/vm-$key.building.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "building the VM disk vm-$key with debootstrap (several minutes, once)"
    vm_disk_build "$tmp" || exit 1
    rm -rf "$VM_CACHE"
    touch "$tmp/ok"
    mv "$tmp" "$VM_CACHE" || exit 1
    # Older recipes nobody used for two days.
    find "$base" -mindepth 1 -maxdepth 1 -type d -name 'vm-*' ! -name "vm-$key" -mtime +2 \
      -exec rm -rf {} + 2>/dev/null
    exit 0
  ) 8>"$base/vm.lock" >&2 || return 1
  touch "$VM_CACHE"
  [[ -n "$cached" ]] || VM_DISK_BUILT=$((SECONDS - start))
}

# vm_busybox: prints the path of a static busybox, installing busybox-static when needed.
vm_busybox() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x "$b" ]] && LC_ALL=C ldd "$b" 2>&1 | grep -q 'not a dynamic executable'; then
      echo "$b"
      return
    fi
  done
  { apt-get install -y -q busybox-static >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q busybox-static >/dev/null; }; } &&
    echo /bin/busybox
}

# vm_demo_const NAME: the text of `pub const NAME: &str = r#"…"#;` in client/src/demo.rs, so the
# guest's app is the demo's, byte for byte.
vm_demo_const() {
  awk -v name="$1" '
    index($0, "pub const " name ": &str = r#\"") == 1 { on = 1; sub(/^[^"]*r#"/, "") }
    on {
      if (index($0, "\"#;")) { sub(/"#;.*$/, ""); if (length($0)) print; exit }
      print
    }' "$ROOT/client/src/demo.rs"
}

# vm_git DIR ARGS...: git in DIR as the demo runs it.
vm_git() {
  local dir=$1
  shift
  git -C "$dir" -c user.name="clawops demo" -c user.email=demo@clawops.invalid \
    -c init.defaultBranch=main -c advice.detachedHead=false "$@"
}

# vm_app_commit DIR VERSION MODE MESSAGE: the demo's DemoApp::commit in DIR (a clone).
vm_app_commit() {
  mkdir -p "$1/etc/gateway"
  printf '%s\n' "$2" >"$1/etc/gateway/version"
  printf '%s\n' "$3" >"$1/etc/gateway/mode"
  vm_git "$1" add -A && vm_git "$1" commit -q -m "$4"
}

# vm_app_files DIR: the demo app's files (DemoApp::create), without the commit.
vm_app_files() {
  local dir=$1 busybox dockerfile compose tool version
  busybox=$(vm_busybox) || { echo "no static busybox (apt-get install busybox-static)"; return 1; }
  dockerfile=$(vm_demo_const DOCKERFILE)
  compose=$(vm_demo_const COMPOSE)
  if [[ "$dockerfile" != "FROM scratch"* || "$compose" != services:* ]]; then
    echo "cannot read DOCKERFILE and COMPOSE from client/src/demo.rs"
    return 1
  fi
  install -m 755 "$busybox" "$dir/busybox"
  printf '%s\n' "$dockerfile" >"$dir/Dockerfile"
  install -m 755 "$ROOT/client/assets/gateway.sh" "$dir/gateway.sh"
  printf '%s\n' "$compose" >"$dir/docker-compose.yml"
  printf '.git\nREADME.md\n' >"$dir/.dockerignore"
  printf 'OpenClaw stand-in for the clawops demo\n' >"$dir/README.md"
  mkdir -p "$dir/tools"
  # SKILL_TOOLS: [("gog", "1.4.2"), …]
  while IFS=' ' read -r tool version; do
    printf '#!/bin/sh\necho "%s %s"\n' "$tool" "$version" >"$dir/tools/$tool"
    chmod 755 "$dir/tools/$tool"
  done < <(sed -n '/pub const SKILL_TOOLS/,/;/p' "$ROOT/client/src/demo.rs" |
    grep -o '("[^"]*", "[^"]*")' | tr -d '(),"')
  [[ -s "$dir/tools/gog" ]] || { echo "cannot read SKILL_TOOLS from client/src/demo.rs"; return 1; }
}

# vm_remote_disk IMAGE: an ext4 image (label "remote") with openclaw.git, the demo app at v1
# on main, owned by alice and readable by everyone.
vm_remote_disk() {
  local img=$1 stage work
  stage=$(mktemp -d "$VM_DIR/remote.XXXXXX") && work=$(mktemp -d "$VM_DIR/app.XXXXXX") || return 1
  vm_git "$work" init -q -b main . && vm_app_files "$work" &&
    vm_app_commit "$work" v1 ok "v1: first version" &&
    git clone -q --bare "$work" "$stage/openclaw.git" || return 1
  git -C "$stage/openclaw.git" remote remove origin 2>/dev/null
  chown -R "$VM_UID:$VM_UID" "$stage" && chmod -R a+rX "$stage" || return 1
  truncate -s 512M "$img" && mkfs.ext4 -q -L remote -d "$stage" "$img" || return 1
  rm -rf "$stage" "$work"
}

# vm_free_port: a free TCP port on 127.0.0.1.
vm_free_port() {
  "${PY:-python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# vm_set_ssh PORT: VM_PORT and the ssh/clawops/git argument sets for it. The test's own ssh
# calls share one connection (a ControlMaster in $VM_DIR): a new sshd per call costs seconds
# under TCG. clawops gets no such option: it opens its own connections.
vm_set_ssh() {
  VM_PORT=$1
  VM_KEY=$VM_CACHE/id_ed25519
  local o=(StrictHostKeyChecking=no UserKnownHostsFile=/dev/null LogLevel=ERROR) x
  VM_SSH_OPTS=(-i "$VM_KEY" -p "$VM_PORT" -o BatchMode=yes -o ConnectTimeout=10
    -o IdentitiesOnly=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=3
    -o ControlMaster=auto -o "ControlPath=$VM_DIR/ssh-$VM_PORT.sock" -o ControlPersist=60)
  for x in "${o[@]}"; do VM_SSH_OPTS+=(-o "$x"); done
  VM_SSH=(ssh "${VM_SSH_OPTS[@]}" "$VM_USER@127.0.0.1")
  VM_GIT_SSH="ssh ${VM_SSH_OPTS[*]}"
  VM_VIA=(--via "ssh://$VM_USER@127.0.0.1:$VM_PORT" --ssh-option "IdentityFile=$VM_KEY"
    --ssh-option IdentitiesOnly=yes)
  for x in "${o[@]}"; do VM_VIA+=(--ssh-option "$x"); done
}

# vm_ssh_mux_exit: ends the shared connection (before a reboot, and when QEMU goes).
vm_ssh_mux_exit() {
  [[ -n "$VM_PORT" && -S "$VM_DIR/ssh-$VM_PORT.sock" ]] || return 0
  timeout 10 ssh -o "ControlPath=$VM_DIR/ssh-$VM_PORT.sock" -O exit "$VM_USER@127.0.0.1" \
    >/dev/null 2>&1
}

vm_ssh() { "${VM_SSH[@]}" "$@"; }

# vm_ssh_quiet SECS CMD...: CMD in the guest without stdin, output or a wait beyond SECS.
vm_ssh_quiet() {
  local secs=$1
  shift
  timeout "$secs" "${VM_SSH[@]}" "$@" </dev/null 2>/dev/null
}

vm_alive() { [[ -n "$VM_PID" ]] && kill -0 "$VM_PID" 2>/dev/null; }

# vm_kill: ends QEMU at once.
vm_kill() {
  vm_ssh_mux_exit
  [[ -n "$VM_PID" ]] || return 0
  kill -TERM "$VM_PID" 2>/dev/null
  local _
  for _ in $(seq 20); do
    vm_alive || break
    sleep 0.25
  done
  kill -KILL "$VM_PID" 2>/dev/null
  wait "$VM_PID" 2>/dev/null
  VM_PID=""
}

# vm_launch ACCEL: QEMU in the background on a fresh free port (retried when the port was
# taken in between). QEMU dies with this shell (PR_SET_PDEATHSIG), even on SIGKILL.
vm_launch() {
  local accel=$1 port _
  local accel_args=(-accel kvm)
  [[ $accel == tcg ]] && accel_args=(-accel "tcg,thread=multi")
  for _ in 1 2 3 4 5; do
    port=$(vm_free_port) || return 1
    : >"$VM_DIR/serial.log"
    setpriv --pdeathsig KILL -- qemu-system-x86_64 -name clawops-test-vm \
      "${accel_args[@]}" -m 2048 -smp 2 \
      -nodefaults -display none -vga none -monitor none -serial "file:$VM_DIR/serial.log" \
      -kernel "$VM_CACHE/vmlinuz" -initrd "$VM_CACHE/initrd.img" -append "$VM_CMDLINE" \
      -drive "file=$VM_DIR/run.qcow2,format=qcow2,if=virtio,cache=unsafe" \
      -drive "file=$VM_DIR/remote.img,format=raw,if=virtio,cache=unsafe" \
      -nic "user,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22,model=virtio-net-pci" \
      -device virtio-rng-pci \
      </dev/null >"$VM_DIR/qemu.log" 2>&1 &
    VM_PID=$!
    sleep 1
    if vm_alive; then
      vm_set_ssh "$port"
      return 0
    fi
    wait "$VM_PID" 2>/dev/null
    VM_PID=""
    grep -q 'host forwarding' "$VM_DIR/qemu.log" || break
  done
  echo "qemu-system-x86_64 ($accel) did not start:"
  cat "$VM_DIR/qemu.log"
  return 1
}

# vm_wait_ssh SECS: until ssh answers (0) or SECS pass or QEMU exits (1).
vm_wait_ssh() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    vm_alive || return 1
    vm_ssh_quiet 20 true && return 0
    sleep 1
  done
  return 1
}

# vm_wait_docker SECS: until `systemctl is-active docker` says active.
vm_wait_docker() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    [[ "$(vm_ssh_quiet 30 systemctl is-active docker)" == active ]] && return 0
    vm_alive || return 1
    sleep 2
  done
  return 1
}

# vm_kvm_boots: whether this KVM guest's kernel writes to the serial console within 10 s (a
# working one does in a second; on some hosts KVM hangs right after the boot loader).
vm_kvm_boots() {
  local _
  for _ in $(seq 20); do
    grep -q 'Linux version' "$VM_DIR/serial.log" 2>/dev/null && return 0
    vm_alive || return 1
    sleep 0.5
  done
  return 1
}

# vm_start: boots the guest on an overlay of the cached disk and the remote disk; returns when
# ssh answers and dockerd is active. Sets VM_ACCEL, VM_BOOT_SSH_SECS, VM_BOOT_DOCKER_SECS. Must
# run in run.sh's own shell (not in $(...) or `check`), because QEMU ends with its parent.
vm_start() {
  if [[ $BASHPID != "$$" ]]; then
    echo "vm_start must run in the test's own shell, not in a subshell (QEMU would die with it)"
    return 1
  fi
  [[ -n "$VM_CACHE" ]] || vm_disk || return 1
  need_cmd qemu-system-x86_64 qemu-system-x86 && need_cmd qemu-img qemu-utils || return 1
  VM_DIR=$TMP/vm
  mkdir -p "$VM_DIR"
  rm -f "$VM_DIR/run.qcow2" "$VM_DIR/remote.img"
  qemu-img create -q -f qcow2 -b "$VM_CACHE/base.img" -F raw "$VM_DIR/run.qcow2" || return 1
  vm_remote_disk "$VM_DIR/remote.img" || return 1
  local accels=() accel start
  if [[ -n "${CLAWOPS_VM_ACCEL:-}" ]]; then
    accels=("$CLAWOPS_VM_ACCEL")
  elif [[ -n "$VM_ACCEL" ]]; then
    accels=("$VM_ACCEL")
  elif [[ -r /dev/kvm && -w /dev/kvm ]]; then
    accels=(kvm tcg)
  else
    accels=(tcg)
  fi
  for accel in "${accels[@]}"; do
    start=$SECONDS
    vm_launch "$accel" || continue
    if [[ $accel == kvm && ${#accels[@]} -gt 1 ]]; then
      if ! vm_kvm_boots; then
        echo "KVM: no kernel output on the serial console within 10 s; using TCG"
        vm_kill
        continue
      fi
    fi
    if vm_wait_ssh "$VM_SSH_TIMEOUT"; then
      VM_ACCEL=$accel
      VM_BOOT_SSH_SECS=$((SECONDS - start))
      break
    fi
    echo "$accel: ssh did not answer within ${VM_SSH_TIMEOUT}s; serial console:"
    tail -n 30 "$VM_DIR/serial.log"
    vm_kill
  done
  [[ -n "$VM_PID" ]] || return 1
  if ! vm_wait_docker 300; then
    echo "dockerd not active 300 s after ssh answered:"
    vm_ssh_quiet 30 sudo journalctl -b -u docker -u containerd --no-pager | tail -n 30
    return 1
  fi
  VM_BOOT_DOCKER_SECS=$((SECONDS - start))
}

# vm_reboot: `systemctl reboot` in the guest; returns when ssh answers with a new boot id
# (VM_REBOOT_SECS after the reboot command) and dockerd is active (VM_REBOOT_DOCKER_SECS).
vm_reboot() {
  local old new start deadline
  VM_REBOOT_SECS=""
  VM_REBOOT_DOCKER_SECS=""
  old=$(vm_ssh_quiet 30 cat /proc/sys/kernel/random/boot_id) || return 1
  start=$SECONDS
  vm_ssh_quiet 30 sudo systemctl reboot
  vm_ssh_mux_exit
  deadline=$((SECONDS + VM_SSH_TIMEOUT))
  while ((SECONDS < deadline)); do
    vm_alive || return 1
    new=$(vm_ssh_quiet 20 cat /proc/sys/kernel/random/boot_id)
    [[ -n "$new" && "$new" != "$old" ]] && break
    sleep 1
  done
  [[ -n "$new" && "$new" != "$old" ]] || return 1
  VM_REBOOT_SECS=$((SECONDS - start))
  vm_wait_docker 300 || return 1
  VM_REBOOT_DOCKER_SECS=$((SECONDS - start))
}

# vm_stop: `systemctl poweroff` in the guest, QEMU killed if still there after 90 s. Returns 1
# when it had to be killed.
vm_stop() {
  vm_alive || { VM_PID=""; return 0; }
  vm_ssh_quiet 30 sudo systemctl poweroff
  vm_ssh_mux_exit
  local _
  for _ in $(seq 90); do
    if ! vm_alive; then
      wait "$VM_PID" 2>/dev/null
      VM_PID=""
      return 0
    fi
    sleep 1
  done
  vm_kill
  return 1
}

# vm_cleanup: for run.sh's exit trap; the overlay and the remote disk go with $TMP.
vm_cleanup() {
  vm_kill
}

# vm_clawops_bin / vm_agent_bin: the binaries, as the other groups find them.
vm_clawops_bin() {
  if [[ -n "${CLAWOPS_BIN:-}" ]]; then
    echo "$CLAWOPS_BIN"
    return
  fi
  (cd "$ROOT" && cargo build -q -p clawops --bin clawops) >&2 || return 1
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawops"
}

# --- the end-to-end flow ---------------------------------------------------------------------

# vm_env_file: the operator's part of the GCP guide (step 3): .env and ~/.openclaw, which the
# compose file of the demo app needs, in the checkout the startup script cloned.
vm_env_file() {
  # shellcheck disable=SC2016 # expanded in the guest
  timeout 60 "${VM_SSH[@]}" bash -s 2>&1 <<'EOF'
set -e
cd ~/openclaw
[ -f .env ] || printf 'OPENCLAW_IMAGE=openclaw:latest\nOPENCLAW_GATEWAY_PORT=18789\nOPENCLAW_CONFIG_DIR=%s/.openclaw\n' "$HOME" >.env
chmod 640 .env
mkdir -p ~/.openclaw
[ -f ~/.openclaw/openclaw.json ] || echo '{"gateway":{"mode":"local"}}' >~/.openclaw/openclaw.json
EOF
}

# vm_healthz_version SECS WANT: the version the gateway serves on the guest's 127.0.0.1:18789,
# once it is WANT or SECS have passed (then whatever it served last, or nothing).
vm_healthz_version() {
  local deadline=$((SECONDS + $1)) body version=""
  while :; do
    version=""
    body=$(vm_ssh_quiet 30 curl -fsS --max-time 5 http://127.0.0.1:18789/healthz) &&
      version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$body")
    [[ "$version" == "$2" ]] || ((SECONDS >= deadline)) && break
    sleep 3
  done
  echo "$version"
}

# vm_flow BIN AGENT: clawops against the guest, as a person would from their laptop.
vm_flow() {
  local bin=$1 agent=$2 out rc token=$VM_DIR/token sha
  section "clawops against the VM: install, build, up, update, logs, verify, memory, reboot, install"
  local c=(timeout 900 "$bin" "${VM_VIA[@]}") t0=$SECONDS
  rc=0
  out=$("${c[@]}" install --agent-bin "$agent" --repo-url /srv/remote/openclaw.git \
    --output "$token" 2>&1) || rc=$?
  echo "     (figure) install, first run: $((SECONDS - t0))s"
  expect_eq "install exits 0" 0 "$rc"
  [[ $rc == 0 ]] || { printf '%s\n' "$out" | tail -n 40 | sed 's/^/     | /'; return; }
  check "install saved the token (0600)" bash -c "[[ \$(stat -c %a '$token') == 600 ]]"
  check "agent active and enabled in the guest" \
    vm_ssh_quiet 30 'systemctl is-active clawops-agent && systemctl is-enabled clawops-agent'
  # shellcheck disable=SC2016 # expanded in the guest
  check "checkout cloned from /srv/remote/openclaw.git" \
    vm_ssh_quiet 30 'test "$(git -C ~/openclaw rev-parse HEAD)" = "$(git -C /srv/remote/openclaw.git rev-parse main)"'
  check "operator's .env and ~/.openclaw in place" vm_env_file
  # The agent's git trusts the checkout only (`-c safe.directory`, GIT_CONFIG_NOSYSTEM), and
  # refuses to fetch from a local-path remote that alice owns ("dubious ownership"). A real
  # VM's remote is a URL, where git makes no such check; here the operator trusts it too, in
  # the file that is theirs after the first install.
  # Appended, not `git config --file` (which replaces the file: root:root, unreadable by clawops).
  check "operator trusts the local remote in /etc/clawops/gitconfig" vm_ssh_quiet 60 \
    "printf '[safe]\n\tdirectory = /srv/remote/openclaw.git\n' | sudo tee -a /etc/clawops/gitconfig >/dev/null &&
      sudo -u clawops git config --file /etc/clawops/gitconfig --get-all safe.directory | grep -qx /srv/remote/openclaw.git"

  rc=0
  out=$("${c[@]}" --token-file "$token" build 2>&1) || rc=$?
  expect_eq "build exits 0" 0 "$rc"
  [[ $rc == 0 ]] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     | /'
  rc=0
  out=$("${c[@]}" --token-file "$token" up 2>&1) || rc=$?
  expect_eq "up exits 0" 0 "$rc"
  [[ $rc == 0 ]] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     | /'
  expect_eq "gateway serves v1 on the guest's 127.0.0.1:18789" v1 "$(vm_healthz_version 180 v1)"

  # A new commit pushed to the guest's remote from here, over ssh, as a developer would.
  local up=$VM_DIR/upstream
  rm -rf "$up"
  if GIT_SSH_COMMAND=$VM_GIT_SSH git clone -q "ssh://$VM_USER@127.0.0.1/srv/remote/openclaw.git" "$up" &&
    vm_app_commit "$up" v2 ok "v2: second version" &&
    GIT_SSH_COMMAND=$VM_GIT_SSH vm_git "$up" push -q origin HEAD:main; then
    pass "pushed v2 to the guest's remote over ssh"
  else
    failed "pushed v2 to the guest's remote over ssh"
  fi
  sha=$(vm_git "$up" rev-parse HEAD)
  rc=0
  out=$("${c[@]}" --token-file "$token" update 2>&1) || rc=$?
  expect_eq "update exits 0" 0 "$rc"
  [[ $rc == 0 ]] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     | /'
  # update waits for readiness itself: v2 is served when it returns (else it rolled back).
  expect_eq "gateway serves v2 after update" v2 "$(vm_healthz_version 10 v2)"

  out=$("${c[@]}" --token-file "$token" logs --tail 20 2>&1)
  expect_contains "logs --tail 20 shows the gateway's ready line" "$out" \
    "[gateway] listening on ws://0.0.0.0:18789"
  # Look-only: each `--version` probe is a docker exec, which takes longer than the 5 s probe
  # limit in a guest emulated ~25x slower than native; the host's tests run the probes.
  check "verify --no-run busybox gog goplaces wacli" "${c[@]}" --token-file "$token" \
    verify --no-run busybox gog goplaces wacli
  check "memory" "${c[@]}" --token-file "$token" memory
  vm_exec_kill "$bin" "$token"
  out=$("${c[@]}" --token-file "$token" status --json 2>&1)
  expect_contains "status --json names the deployed commit" "$out" "$sha"

  t0=$SECONDS
  if vm_reboot; then
    pass "guest reboots with the gateway deployed: ssh after ${VM_REBOOT_SECS}s, dockerd after ${VM_REBOOT_DOCKER_SECS}s"
  else
    failed "guest reboots with the gateway deployed" "$(tail -n 30 "$VM_DIR/serial.log")"
    return
  fi
  expect_eq "gateway serves v2 again after the reboot" v2 "$(vm_healthz_version 240 v2)"
  echo "     (figure) reboot to a ready gateway: $((SECONDS - t0))s"
  # The agent is its own unit, and may come up after the gateway's container.
  check_within "agent answers after the reboot" 120 "${c[@]}" --token-file "$token" status

  out=$("${c[@]}" --token-file "$token" status --json 2>&1)
  expect_contains "status after the reboot names the deployed commit" "$out" "$sha"

  local pid start
  pid=$(vm_ssh_quiet 30 systemctl show -P MainPID clawops-agent)
  start=$SECONDS
  rc=0
  out=$("${c[@]}" install --agent-bin "$agent" --repo-url /srv/remote/openclaw.git \
    --output "$token" 2>&1) || rc=$?
  expect_eq "second install exits 0" 0 "$rc"
  [[ $rc == 0 ]] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     | /'
  expect_contains "second install changes nothing and says so" "$out" "nothing changed on"
  expect_eq "second install: same agent process" "$pid" \
    "$(vm_ssh_quiet 30 systemctl show -P MainPID clawops-agent)"
  echo "     (figure) install, no-op second run: $((SECONDS - start))s"
  check "token from the second install works" "${c[@]}" --token-file "$token" status
  expect_eq "gateway still serves v2 after the second install" v2 "$(vm_healthz_version 60 v2)"
  vm_install_refusals "$bin" "$agent" "$token"
  echo "     systemd-analyze security clawops-agent.service (in the guest):"
  vm_ssh_quiet 120 'systemd-analyze security clawops-agent.service 2>&1 | tail -n 1' | sed 's/^/     | /'
}

# vm_exec_sleeps BIN TOKEN: how many `sleep 4242` run in the guest's gateway container (or
# why that could not be seen).
vm_exec_sleeps() {
  local out
  out=$(timeout 120 "$1" "${VM_VIA[@]}" --token-file "$2" exec -T -- ps 2>&1) ||
    { echo "exec -- ps failed: $out"; return; }
  grep -c 'sleep 4242' <<<"$out"
}

# vm_exec_kill BIN TOKEN: an exec whose client dies is killed by the packaged agent, which runs
# as `clawops` under the hardened unit while the gateway's processes belong to root.
vm_exec_kill() {
  local bin=$1 token=$2 client deadline
  "$bin" "${VM_VIA[@]}" --token-file "$token" exec -T -- sleep 4242 </dev/null >/dev/null 2>&1 &
  client=$!
  deadline=$((SECONDS + 180))
  until [[ $(vm_exec_sleeps "$bin" "$token") == 1 ]] || ((SECONDS >= deadline)); do sleep 2; done
  expect_eq "exec -T -- sleep runs in the guest's gateway" 1 "$(vm_exec_sleeps "$bin" "$token")"
  kill -KILL "$client" 2>/dev/null
  wait "$client" 2>/dev/null
  deadline=$((SECONDS + 180))
  until [[ $(vm_exec_sleeps "$bin" "$token") == 0 ]] || ((SECONDS >= deadline)); do sleep 2; done
  expect_eq "an exec whose client was killed is killed in the guest" 0 "$(vm_exec_sleeps "$bin" "$token")"
  # A count, so that a failed look into the journal does not pass as "nothing".
  expect_eq "the agent had nothing to warn about" 0 \
    "$(vm_ssh_quiet 30 'sudo journalctl -u clawops-agent --no-pager -o cat | grep -cF "could not be killed"')"
}

# vm_install_refusals BIN AGENT TOKEN: bad input refused with nothing touched: an agent for
# another architecture, a user without sudo, and a full disk during the upload.
vm_install_refusals() {
  local bin=$1 agent=$2 token=$3 out rc sha
  local c=(timeout 600 "$bin" "${VM_VIA[@]}")
  sha=$(vm_ssh_quiet 30 sha256sum /usr/local/bin/clawops-agent | cut -d' ' -f1)
  # The same binary marked as aarch64 (e_machine 183 at offset 18).
  cp "$agent" "$VM_DIR/agent-arm"
  printf '\xb7\x00' | dd of="$VM_DIR/agent-arm" bs=1 seek=18 conv=notrunc status=none
  rc=0
  out=$("${c[@]}" install --agent-bin "$VM_DIR/agent-arm" --output "$token" 2>&1) || rc=$?
  expect_eq "an aarch64 agent is refused (exit 1)" 1 "$rc"
  expect_contains "an aarch64 agent: says why, nothing sent" "$out" "is built for aarch64"
  expect_eq "an aarch64 agent: no upload left in the guest" "" \
    "$(vm_ssh_quiet 30 'ls -d /tmp/clawops-install.* 2>/dev/null')"

  vm_ssh_quiet 60 'id bob >/dev/null 2>&1 || { sudo useradd -m -s /bin/bash bob &&
    sudo install -d -o bob -m 700 ~bob/.ssh && sudo install -o bob -m 600 ~/.ssh/authorized_keys ~bob/.ssh/; }'
  rc=0
  out=$(timeout 300 "$bin" "${VM_VIA[@]/$VM_USER@/bob@}" install --agent-bin "$agent" \
    --output "$VM_DIR/bob.token" 2>&1) || rc=$?
  expect_eq "a user without sudo is refused (exit 1)" 1 "$rc"
  expect_contains "a user without sudo: says so" "$out" "bob has no passwordless sudo"

  # A full disk: the upload of a new agent fails, the installed one is untouched and runs on.
  cp "$agent" "$VM_DIR/agent-v2" && printf '\nclawops-test-v2\n' >>"$VM_DIR/agent-v2"
  # shellcheck disable=SC2016 # expanded in the guest
  vm_ssh_quiet 60 'sudo fallocate -l $(( $(df --output=avail -B1 /tmp | tail -n 1) - 4096 )) /var/tmp/filler'
  rc=0
  out=$("${c[@]}" install --agent-bin "$VM_DIR/agent-v2" --output "$token" 2>&1) || rc=$?
  vm_ssh_quiet 60 'sudo rm -f /var/tmp/filler'
  expect_eq "a full disk during the upload: exit 1" 1 "$rc"
  expect_contains "a full disk: the installed agent is untouched" "$out" "the installed agent is untouched"
  # shellcheck disable=SC2016 # expanded in the guest
  expect_eq "a full disk: same agent, still active" "$sha active" \
    "$(vm_ssh_quiet 30 'echo "$(sha256sum /usr/local/bin/clawops-agent | cut -d" " -f1) $(systemctl is-active clawops-agent)"')"
}

group_vm() {
  section "a real Debian 12 VM under QEMU"
  local start out bin agent flow=""
  if ! bin=$(vm_clawops_bin) || ! "$bin" install --help >/dev/null 2>&1; then
    failed "the clawops CLI with its install command (cargo build -p clawops)"
  elif agent=$(agent_binary); then
    flow=1
  else
    failed "build clawops-agent (cargo build -p clawops-agent)"
  fi
  start=$SECONDS
  if ! vm_disk; then
    failed "VM disk (debootstrap + mkfs.ext4 -d)"
    return
  fi
  if [[ -n "$VM_DISK_BUILT" ]]; then
    pass "VM disk built in ${VM_DISK_BUILT}s (${VM_CACHE})"
  else
    pass "VM disk from the cache in $((SECONDS - start))s (${VM_CACHE})"
  fi
  if ! vm_start >"$TMP/vm-start.log" 2>&1; then
    failed "guest boots to ssh and dockerd" "$(cat "$TMP/vm-start.log")" \
      "serial console (last lines):" "$(tail -n 40 "$VM_DIR/serial.log" 2>/dev/null)"
    vm_kill
    return
  fi
  [[ -s "$TMP/vm-start.log" ]] && sed 's/^/     | /' "$TMP/vm-start.log"
  pass "guest boots ($VM_ACCEL): ssh after ${VM_BOOT_SSH_SECS}s, dockerd active after ${VM_BOOT_DOCKER_SECS}s"

  # shellcheck disable=SC2016 # expanded in the guest
  expect_eq "x86_64 Debian 12" "x86_64 debian 12" \
    "$(vm_ssh_quiet 30 'echo "$(uname -m) $(. /etc/os-release && echo "$ID $VERSION_ID")"')"
  expect_eq "sshd forwarded on the host's loopback only" "127.0.0.1:$VM_PORT" \
    "$(ss -Hltn "sport = :$VM_PORT" | awk '{ print $4 }' | sort -u | tr '\n' ' ' | sed 's/ $//')"
  out=$(vm_ssh_quiet 30 ip -4 route show table main)
  expect_eq "guest routes: 10.0.2.0/24 and docker's bridge only" "" \
    "$(grep -Ev '^(10\.0\.2\.0/24 dev en|172\.1[6-9]\.0\.0/16 dev docker0)' <<<"$out")"
  expect_contains "no route beyond (ip route get 192.0.2.1)" \
    "$(vm_ssh_quiet 30 'ip route get 192.0.2.1 2>&1')" "Network is unreachable"
  check "restrict=on: the guest cannot reach the host (10.0.2.2:22)" \
    vm_ssh_quiet 30 '! timeout 3 bash -c "exec 3<>/dev/tcp/10.0.2.2/22"'
  out=$(vm_ssh_quiet 30 findmnt -no SOURCE,FSTYPE /srv/remote)
  expect_eq "/srv/remote is the remote disk (LABEL=remote)" "/dev/vdb ext4" "$out"
  [[ "$out" == "/dev/vdb ext4" ]] ||
    vm_ssh_quiet 60 'systemctl status --no-pager srv-remote.mount; ls -l /dev/disk/by-label' |
    sed 's/^/     | /'

  expect_contains "git ls-remote /srv/remote/openclaw.git lists main" \
    "$(vm_ssh_quiet 60 git ls-remote /srv/remote/openclaw.git)" "refs/heads/main"
  expect_contains "the remote is the demo app (v1)" \
    "$(vm_ssh_quiet 60 'git -C /srv/remote/openclaw.git show main:etc/gateway/version main:Dockerfile')" \
    $'v1\nFROM scratch'
  expect_contains "the host reaches the remote over ssh (git ls-remote)" \
    "$(GIT_SSH_COMMAND=$VM_GIT_SSH timeout 60 git ls-remote "ssh://$VM_USER@127.0.0.1/srv/remote/openclaw.git" 2>&1)" \
    "refs/heads/main"
  check "the remote is writable by $VM_USER" vm_ssh_quiet 30 'test -w /srv/remote/openclaw.git/refs/heads'
  check "passwordless sudo" vm_ssh_quiet 30 sudo -n true
  expect_eq "docker answers (root)" "ok" "$(vm_ssh_quiet 60 sudo docker info --format ok)"

  if [[ -n "$flow" ]]; then
    # The flow reboots the guest with the gateway deployed; one reboot is enough.
    strip -o "$VM_DIR/clawops-agent" "$agent" 2>/dev/null || cp "$agent" "$VM_DIR/clawops-agent"
    vm_flow "$bin" "$VM_DIR/clawops-agent"
  else
    if vm_reboot; then
      pass "reboot: ssh after ${VM_REBOOT_SECS}s, dockerd active after ${VM_REBOOT_DOCKER_SECS}s"
      expect_contains "remote mounted again after the reboot" \
        "$(vm_ssh_quiet 60 git ls-remote /srv/remote/openclaw.git)" "refs/heads/main"
    else
      failed "reboot brings ssh and dockerd back" "$(tail -n 40 "$VM_DIR/serial.log")"
    fi
  fi

  if vm_stop; then
    pass "guest powers off"
  else
    failed "guest powers off (QEMU had to be killed)" "$(tail -n 20 "$VM_DIR/serial.log")"
  fi
}
