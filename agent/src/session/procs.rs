//! What `/proc` says about an exec's processes, so they can be killed when the client goes
//! away: the processes of the session the exec'd process leads, each with its pid on the host
//! and in the container's pid namespace (the `NSpid:` line). Linux-only, as the agent is.
use std::path::Path;

use crate::untrusted::{self, UntrustedReadError};

/// `/proc/<pid>/status` is about 1.5 KiB and `stat` a few hundred bytes.
const MAX_PROC_FILE: u64 = 16 * 1024;
/// Host processes looked at, at most (a VM runs hundreds).
const MAX_SCAN: usize = 1 << 16;

/// One process, by its pid on the host and in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub host: i32,
    pub container: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error(transparent)]
    Read(#[from] UntrustedReadError),
    #[error("/proc/{pid}/status has no NSpid line")]
    NoNsPid { pid: i32 },
    #[error("cannot list {}: {source}", root.display())]
    List {
        root: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The live processes of the exec whose process is `leader` (a host pid), the leader first.
///
/// runc makes every exec'd process the leader of a new session, with a TTY or without, and a
/// session holds only the leader's descendants (a process can move only to a group of its own
/// session), so its members are exactly what the exec started, however its shell grouped the
/// jobs: a process group is not enough, since an interactive shell gives each job its own.
/// Descendants that started sessions of their own (daemons) are not found. When the leader
/// leads no session (another runtime), only the leader is returned.
pub fn session_of(proc_root: &Path, leader: i32) -> Result<Vec<Target>, ProcError> {
    let status = read(proc_root, leader, "status")?;
    let leader_ns = ns_pids(&status).ok_or(ProcError::NoNsPid { pid: leader })?;
    // The container's namespace is the leader's innermost; a member in a namespace of its own
    // has more levels, and its pid at the leader's depth is the one the container knows.
    let depth = leader_ns.len();
    let mut targets = vec![Target {
        host: leader,
        container: leader_ns[depth - 1],
    }];
    let leads = read(proc_root, leader, "stat")
        .ok()
        .and_then(|s| state_and_session(&s))
        .is_some_and(|(_, session)| session == leader);
    if !leads {
        return Ok(targets);
    }
    let entries = std::fs::read_dir(proc_root).map_err(|source| ProcError::List {
        root: proc_root.to_owned(),
        source,
    })?;
    for entry in entries.take(MAX_SCAN).flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let member = read(proc_root, pid, "stat")
            .ok()
            .and_then(|s| state_and_session(&s))
            .is_some_and(|(state, session)| state != 'Z' && session == leader);
        if pid == leader || !member {
            continue;
        }
        // It may have exited since: then it needs no killing.
        let Some(ns) = read(proc_root, pid, "status")
            .ok()
            .and_then(|s| ns_pids(&s))
        else {
            continue;
        };
        if let Some(&container) = ns.get(depth - 1) {
            targets.push(Target {
                host: pid,
                container,
            });
        }
    }
    Ok(targets)
}

/// Whether host process `pid` still runs: it exists and is not a zombie.
pub fn running(proc_root: &Path, pid: i32) -> bool {
    read(proc_root, pid, "stat")
        .ok()
        .and_then(|s| state_and_session(&s))
        .is_some_and(|(state, _)| state != 'Z')
}

/// The exec's processes ([`session_of`]) that are in container `container_id`: a pid the
/// engine named may have been reused since by a process elsewhere, and then none of its
/// session is the exec's.
pub fn exec_processes(
    proc_root: &Path,
    leader: i32,
    container_id: &str,
) -> Result<Vec<Target>, ProcError> {
    // A leader missing from /proc is session_of's error, which the caller tells apart.
    let session = session_of(proc_root, leader)?;
    let mut kept = Vec::with_capacity(session.len());
    for target in session {
        if in_container(proc_root, target.host, container_id)? {
            kept.push(target);
        } else if target.host == leader {
            return Ok(Vec::new());
        }
    }
    Ok(kept)
}

/// Whether host process `pid` is in the container: a part of its cgroup path is the
/// container's id (`/docker/<id>`, cgroupfs driver) or its scope (`docker-<id>.scope`, systemd
/// driver), with either cgroup version. A process that is gone is in no container.
pub fn in_container(proc_root: &Path, pid: i32, container_id: &str) -> Result<bool, ProcError> {
    let cgroups = match read(proc_root, pid, "cgroup") {
        Ok(cgroups) => cgroups,
        Err(UntrustedReadError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let scope = format!("-{container_id}.scope");
    Ok(!container_id.is_empty()
        && cgroups
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .flat_map(|path| path.split('/'))
            .any(|part| part == container_id || part.ends_with(&scope)))
}

/// Whether this /proc hides other users' processes from us (hidepid, systemd's ProtectProc):
/// then init, which is root's, is not there.
pub fn hides_others(proc_root: &Path) -> bool {
    !proc_root.join("1").exists()
}

fn read(proc_root: &Path, pid: i32, file: &str) -> Result<String, UntrustedReadError> {
    untrusted::read_text(&proc_root.join(pid.to_string()).join(file), MAX_PROC_FILE)
}

/// The pids of the `NSpid:` line of `/proc/<pid>/status`, the outermost namespace first: the
/// last is the pid in the process's own namespace.
pub fn ns_pids(status: &str) -> Option<Vec<i32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let pids: Option<Vec<i32>> = line.split_whitespace().map(|f| f.parse().ok()).collect();
    pids.filter(|p| !p.is_empty())
}

/// State and session of `/proc/<pid>/stat`. The command name in parentheses may hold spaces
/// and parentheses, so the fields are counted from the last `)`.
fn state_and_session(stat: &str) -> Option<(char, i32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    // ppid, pgrp, session
    let session = fields.nth(2)?.parse().ok()?;
    Some((state, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspid_is_read_from_its_own_line() {
        let status = "Name:\tsleep\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nTracerPid:\t0\n\
                      NStgid:\t4242\t12\nNSpid:\t4242\t12\nNSpgid:\t4240\t7\nNSsid:\t4240\t7\n";
        assert_eq!(ns_pids(status), Some(vec![4242, 12]));
        assert_eq!(ns_pids("NSpid:\t31\n"), Some(vec![31]));
        assert_eq!(ns_pids("NSpid:\t31\t9\t2\n").unwrap().last(), Some(&2));
        assert_eq!(ns_pids("Name:\tx\nNStgid:\t5\t1\n"), None);
        assert_eq!(ns_pids("NSpid:\n"), None);
        assert_eq!(ns_pids("NSpid:\t5\tx\n"), None);
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        assert_eq!(
            state_and_session("12 (sleep) S 7 9 9 0 -1 4194560 95 0"),
            Some(('S', 9))
        );
        assert_eq!(
            state_and_session("13 (a) b) (c) Z 1 13 11 0"),
            Some(('Z', 11))
        );
        assert_eq!(state_and_session("14 (sleep"), None);
        assert_eq!(state_and_session("15 (x) R 1 2"), None);
    }

    fn pairs(targets: &[Target]) -> Vec<(i32, i32)> {
        targets.iter().map(|t| (t.host, t.container)).collect()
    }

    const CONTAINER: &str = "4f0c2a9e1b7d5c3a8e6f0b2d4c6a8e0f1b3d5c7a9e1f3b5d7c9a1e3f5b7d9c1a";

    /// A fake /proc: (pid, stat, NSpid line), each process in [`CONTAINER`]'s cgroup.
    fn proc_tree(procs: &[(i32, &str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (pid, stat, nspid) in procs {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("stat"), stat).unwrap();
            std::fs::write(dir.join("status"), format!("Name:\tx\n{nspid}\nUid:\t0\n")).unwrap();
            let cgroup = format!("0::/system.slice/docker-{CONTAINER}.scope\n");
            std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        }
        std::fs::create_dir(root.path().join("self")).unwrap();
        root
    }

    #[test]
    fn the_session_is_the_leader_and_its_live_members_in_the_container_namespace() {
        let root = proc_tree(&[
            (100, "100 (sh) S 90 100 100 0", "NSpid:\t100\t6"),
            (101, "101 (sleep) S 100 100 100 0", "NSpid:\t101\t7"),
            // A job of an interactive shell: its own group, the same session.
            (102, "102 (sleep) S 100 102 100 0", "NSpid:\t102\t8"),
            // In a namespace of its own: its pid at the container's depth.
            (103, "103 (unshared) S 100 103 100 0", "NSpid:\t103\t9\t1"),
            (104, "104 (sleep) Z 100 100 100 0", "NSpid:\t104\t10"),
            // The container's init and another session.
            (50, "50 (sleep) S 40 50 50 0", "NSpid:\t50\t1"),
            (105, "105 (daemon) S 1 105 105 0", "NSpid:\t105\t11"),
        ]);
        let mut got = pairs(&session_of(root.path(), 100).unwrap());
        assert_eq!(got[0], (100, 6), "the leader first");
        got.sort();
        assert_eq!(got, [(100, 6), (101, 7), (102, 8), (103, 9)]);

        assert!(running(root.path(), 101));
        assert!(!running(root.path(), 104), "a zombie is dead");
        assert!(!running(root.path(), 999), "gone");
    }

    #[test]
    fn the_real_proc_shows_a_session_with_a_background_job() {
        // setsid(1) execs in place: the child spawned here leads no group yet.
        let mut child = std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 30 & sleep 30; true"])
            .spawn()
            .expect("setsid (util-linux)");
        let leader = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let found = session_of(Path::new("/proc"), leader).unwrap();
            if found.len() == 3 || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        for t in &found {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(t.host),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        child.wait().unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].host, leader);
        assert!(found.iter().all(|t| t.host > 0 && t.container > 0));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while found.iter().any(|t| running(Path::new("/proc"), t.host)) {
            // The sleeps are reparented to init, which reaps them.
            assert!(std::time::Instant::now() < deadline, "{found:?} still run");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn a_leader_of_no_session_is_killed_alone_and_an_unreadable_one_is_an_error() {
        let root = proc_tree(&[
            (200, "200 (sleep) S 90 90 90 0", "NSpid:\t200\t3"),
            (201, "201 (sleep) S 200 90 90 0", "NSpid:\t201\t4"),
            (202, "202 (x) S 1 202 202 0", "Pid:\t202"),
        ]);
        assert_eq!(pairs(&session_of(root.path(), 200).unwrap()), [(200, 3)]);
        assert!(matches!(
            session_of(root.path(), 202),
            Err(ProcError::NoNsPid { pid: 202 })
        ));
        assert!(matches!(
            session_of(root.path(), 999),
            Err(ProcError::Read(UntrustedReadError::NotFound { .. }))
        ));
    }

    #[test]
    fn a_process_is_in_the_container_when_its_cgroup_path_names_it() {
        let root = proc_tree(&[(300, "300 (sh) S 1 300 300 0", "NSpid:\t300\t1")]);
        let cgroup = root.path().join("300/cgroup");
        // systemd driver (cgroup v2), as proc_tree writes it.
        assert!(in_container(root.path(), 300, CONTAINER).unwrap());
        // cgroupfs driver, cgroup v1 and v2 lines.
        let cgroupfs = format!("4:memory:/docker/{CONTAINER}\n0::/docker/{CONTAINER}\n");
        std::fs::write(&cgroup, cgroupfs).unwrap();
        assert!(in_container(root.path(), 300, CONTAINER).unwrap());
        // A pid reused outside the container, an id that is only a prefix, no id, no process.
        assert!(!in_container(root.path(), 300, &CONTAINER[..12]).unwrap());
        assert!(!in_container(root.path(), 300, "").unwrap());
        assert!(!in_container(root.path(), 999, CONTAINER).unwrap());
        std::fs::write(&cgroup, "0::/system.slice/cron.service\n").unwrap();
        assert!(!in_container(root.path(), 300, CONTAINER).unwrap());
    }

    #[test]
    fn the_exec_is_what_of_its_session_is_in_the_container() {
        let root = proc_tree(&[
            (400, "400 (sh) S 90 400 400 0", "NSpid:\t400\t6"),
            (401, "401 (sleep) S 400 400 400 0", "NSpid:\t401\t7"),
            (402, "402 (sleep) S 400 400 400 0", "NSpid:\t402\t8"),
        ]);
        std::fs::write(root.path().join("402/cgroup"), "0::/user.slice\n").unwrap();
        let mut got = pairs(&exec_processes(root.path(), 400, CONTAINER).unwrap());
        got.sort();
        assert_eq!(got, [(400, 6), (401, 7)]);
        // The leader's pid reused elsewhere: nothing of it is the exec's.
        std::fs::write(root.path().join("400/cgroup"), "0::/user.slice\n").unwrap();
        assert_eq!(
            pairs(&exec_processes(root.path(), 400, CONTAINER).unwrap()),
            []
        );
        // A leader missing from /proc (gone, or hidden) is an error the caller looks into.
        assert!(matches!(
            exec_processes(root.path(), 999, CONTAINER),
            Err(ProcError::Read(UntrustedReadError::NotFound { .. }))
        ));
        // No init in this /proc: it hides other users' processes.
        assert!(hides_others(root.path()));
        std::fs::create_dir(root.path().join("1")).unwrap();
        assert!(!hides_others(root.path()));
    }
}
