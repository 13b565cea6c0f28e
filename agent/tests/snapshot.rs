//! State snapshots against the real engine: state with private files of other users, read
//! through the archive API of the container that mounts it (or a helper container on the
//! first deploy), restored in place with owners and modes, extra files removed, the state it
//! replaced kept as a snapshot.
use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use bollard::{Docker, query_parameters::StopContainerOptionsBuilder};
use clawops_agent::snapshot::{self, Engine, Method, SnapshotError};
use testkit::{
    cleanup::ProjectGuard,
    container::ServiceContainer,
    image::{self, TestImage},
    unique,
};

const SERVICE: &str = "gateway";
const MOUNT: &str = "/home/node/.openclaw";

async fn busybox() -> TestImage {
    image::build(&unique("clawops-snaptest"), &[], r#"["sleep", "3600"]"#).await
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A state dir as OpenClaw leaves it: owned by `node` (1000), private files and directories,
/// one file nobody may read, a symlink, a hard link, a name starting with a dash.
fn populate(dir: &Path) {
    std::fs::create_dir_all(dir.join("credentials")).unwrap();
    std::fs::create_dir_all(dir.join("workspace/skills")).unwrap();
    std::fs::write(dir.join("openclaw.json"), r#"{"v":1}"#).unwrap();
    std::fs::write(dir.join("credentials/token"), "secret").unwrap();
    std::fs::write(dir.join("workspace/notes.md"), "hello").unwrap();
    std::fs::write(dir.join("naïve name.txt"), "unicode").unwrap();
    std::os::unix::fs::symlink("openclaw.json", dir.join("link")).unwrap();
    std::fs::hard_link(dir.join("workspace/notes.md"), dir.join("notes-hardlink")).unwrap();
    for p in [
        "",
        "openclaw.json",
        "credentials",
        "workspace",
        "workspace/skills",
        "workspace/notes.md",
        "naïve name.txt",
        "link",
    ] {
        chown(&dir.join(p), 1000, 1000);
    }
    chown(&dir.join("credentials/token"), 1001, 1002);
    chmod(dir, 0o751);
    chmod(&dir.join("openclaw.json"), 0o600);
    chmod(&dir.join("credentials"), 0o700);
    chmod(&dir.join("credentials/token"), 0o000);
}

/// Everything a restore must bring back: type, mode, owner, content or link target.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let what = if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if meta.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else {
            format!("file {:?}", std::fs::read_to_string(&p).unwrap())
        };
        let rel = p.strip_prefix(dir).unwrap().to_owned();
        let mode = meta.mode() & 0o7777;
        out.insert(
            rel,
            format!("{what} {mode:o} {}:{}", meta.uid(), meta.gid()),
        );
    }
    out
}

/// Changes of every kind: content, mode, owner, deleted, added (deep, and named like an
/// option), a directory replaced by a file.
fn mess_up(dir: &Path) {
    std::fs::write(dir.join("openclaw.json"), r#"{"v":2,"migrated":true}"#).unwrap();
    chmod(&dir.join("openclaw.json"), 0o644);
    chown(&dir.join("openclaw.json"), 0, 0);
    chmod(dir, 0o755);
    std::fs::remove_file(dir.join("credentials/token")).unwrap();
    std::fs::remove_file(dir.join("link")).unwrap();
    std::fs::create_dir_all(dir.join("new/deep")).unwrap();
    std::fs::write(dir.join("new/deep/file"), "x").unwrap();
    std::fs::write(dir.join("-rf"), "not an option").unwrap();
    std::fs::write(dir.join("credentials/added"), "x").unwrap();
    std::fs::remove_dir_all(dir.join("workspace/skills")).unwrap();
    std::fs::write(dir.join("workspace/skills"), "now a file").unwrap();
}

fn members(tar_path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn engine<'a>(
    docker: &'a clawops_agent::docker::Engine,
    project: &'a str,
    image: Option<&'a str>,
) -> Engine<'a> {
    Engine {
        docker,
        project,
        service: SERVICE,
        image,
    }
}

async fn stop(docker: &Docker, id: &str) {
    docker
        .stop_container(
            id,
            Some(StopContainerOptionsBuilder::default().t(0).build()),
        )
        .await
        .unwrap();
}

/// Helper containers the snapshot code left behind for `dir` (it must remove them).
async fn helpers_for(docker: &Docker, dir: &Path) -> usize {
    let filters = HashMap::from([(
        "label".to_string(),
        vec!["clawops.snapshot-helper=1".to_string()],
    )]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.list_containers(Some(options)).await.unwrap();
    list.iter()
        .filter(|c| {
            c.mounts.iter().flatten().any(|m| {
                m.source
                    .as_deref()
                    .is_some_and(|s| dir.starts_with(s) || Path::new(s).starts_with(dir))
            })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_and_restore_go_through_the_mounting_container() {
    let docker = testkit::docker::connect().await;
    let image = busybox().await;
    let project = unique("snaptest");
    let _guard = ProjectGuard::new(&project);
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    populate(&dir);
    let original = fingerprint(&dir);
    let id = ServiceContainer::new(&project, SERVICE, &image.tag)
        .bind(&dir, MOUNT)
        .start()
        .await;
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, Some(&image.tag));

    let snap = snapshot::take(
        &engine,
        state.path(),
        "op1-aaaa",
        std::slice::from_ref(&dir),
        3,
    )
    .await
    .unwrap();
    assert!(snap.size_bytes > 0);
    assert_eq!(snap.dirs.len(), 1);
    assert_eq!(snap.dirs[0].path, dir);
    // The engine read it, not the agent's own file access.
    assert_eq!(
        snap.dirs[0].method,
        Method::Container {
            container: format!("{project}-{SERVICE}-1"),
            path: PathBuf::from(MOUNT),
        }
    );
    let names = members(&snap.path);
    let root = dir.strip_prefix("/").unwrap().display().to_string();
    assert!(
        names.contains(&format!("{root}/credentials/token")),
        "{names:?}"
    );
    assert!(names.contains(&".clawops-snapshot.json".to_string()));
    let mode = std::fs::metadata(&snap.path).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "snapshots hold credentials");

    mess_up(&dir);
    let changed = fingerprint(&dir);

    // The gateway must be stopped first, and the API says so.
    let err = snapshot::restore(
        &engine,
        state.path(),
        &snap.path,
        "op2-before-restore-bbbb",
        3,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SnapshotError::InUse { container, .. } if container == &format!("{project}-{SERVICE}-1")),
        "{err}"
    );
    assert_eq!(
        fingerprint(&dir),
        changed,
        "a refused restore changes nothing"
    );

    stop(&docker, &id).await;
    let restored = snapshot::restore(
        &engine,
        state.path(),
        &snap.path,
        "op2-before-restore-bbbb",
        3,
    )
    .await
    .unwrap();
    assert_eq!(restored.dirs, std::slice::from_ref(&dir));
    assert!(restored.left_over.is_empty(), "{:?}", restored.left_over);
    assert_eq!(fingerprint(&dir), original);
    // Still the same hard link.
    assert_eq!(
        std::fs::metadata(dir.join("notes-hardlink")).unwrap().ino(),
        std::fs::metadata(dir.join("workspace/notes.md"))
            .unwrap()
            .ino()
    );

    // The state it replaced is a snapshot like the others, read through the stopped container.
    let before = &restored.before;
    assert!(
        before
            .path
            .display()
            .to_string()
            .ends_with("-op2-before-restore-bbbb.tar")
    );
    assert!(matches!(before.dirs[0].method, Method::Container { .. }));
    assert_eq!(
        snapshot::list(state.path()).unwrap(),
        [before.path.clone(), snap.path.clone()]
    );
    let names = members(&before.path);
    assert!(
        names.contains(&format!("{root}/new/deep/file")),
        "{names:?}"
    );
    assert!(names.contains(&format!("{root}/-rf")), "{names:?}");
    assert!(
        !names.contains(&format!("{root}/credentials/token")),
        "{names:?}"
    );

    // And it can be restored in turn: back to the messed-up state.
    let again = snapshot::restore(&engine, state.path(), &before.path, "op3-before-restore", 3)
        .await
        .unwrap();
    assert!(again.left_over.is_empty(), "{:?}", again.left_over);
    assert_eq!(fingerprint(&dir), changed);
    assert_eq!(helpers_for(&docker, &dir).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn first_deploy_uses_a_helper_container_and_restore_recreates_a_deleted_dir() {
    let docker = testkit::docker::connect().await;
    let image = busybox().await;
    // No container of this project exists yet.
    let project = unique("snaptest");
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    let missing = home.path().join("not-there");
    populate(&dir);
    let original = fingerprint(&dir);
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, Some(&image.tag));

    let snap = snapshot::take(&engine, state.path(), "op1", &[dir.clone(), missing], 3)
        .await
        .unwrap();
    assert_eq!(
        snap.dirs.len(),
        1,
        "missing dirs are skipped: {:?}",
        snap.dirs
    );
    assert_eq!(
        snap.dirs[0].method,
        Method::Helper {
            image: image.tag.clone()
        }
    );
    assert_eq!(helpers_for(&docker, &dir).await, 0);

    // Restore through a helper: extra files removed by `rm` in the service's image.
    mess_up(&dir);
    let restored = snapshot::restore(&engine, state.path(), &snap.path, "op2", 3)
        .await
        .unwrap();
    assert!(restored.left_over.is_empty(), "{:?}", restored.left_over);
    assert_eq!(fingerprint(&dir), original);
    assert!(matches!(
        restored.before.dirs[0].method,
        Method::Helper { .. }
    ));

    // A state dir that is gone comes back inside its parent, owner and mode as recorded.
    std::fs::remove_dir_all(&dir).unwrap();
    let restored = snapshot::restore(&engine, state.path(), &snap.path, "op3", 3)
        .await
        .unwrap();
    assert!(restored.before.dirs.is_empty());
    assert_eq!(fingerprint(&dir), original);
    assert_eq!(helpers_for(&docker, &dir).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mounts_above_and_inside_the_dir_are_honoured() {
    let docker = testkit::docker::connect().await;
    let image = busybox().await;
    let project = unique("snaptest");
    let _guard = ProjectGuard::new(&project);
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    populate(&dir);
    std::fs::write(elsewhere.path().join("other.md"), "not in ~/.openclaw").unwrap();
    // The home is mounted (so the dir is below a mount), and the workspace comes from
    // another host directory, as OPENCLAW_WORKSPACE_DIR allows.
    ServiceContainer::new(&project, SERVICE, &image.tag)
        .bind(home.path(), "/home/node")
        .bind(elsewhere.path(), "/home/node/.openclaw/workspace")
        .start()
        .await;
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, Some(&image.tag));

    let snap = snapshot::take(
        &engine,
        state.path(),
        "op1",
        &[dir.clone(), home.path().join("missing")],
        3,
    )
    .await
    .unwrap();
    assert_eq!(snap.dirs.len(), 1, "{:?}", snap.dirs);
    assert_eq!(
        snap.dirs[0].method,
        Method::Container {
            container: format!("{project}-{SERVICE}-1"),
            path: PathBuf::from(MOUNT),
        }
    );
    assert_eq!(snap.dirs[0].excluded, [PathBuf::from("workspace")]);
    let names = members(&snap.path);
    assert!(
        names.iter().any(|n| n.ends_with("/openclaw.json")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("workspace")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_container_or_image_the_agent_reads_the_dir_itself() {
    let docker = testkit::docker::connect().await;
    let project = unique("snaptest");
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    populate(&dir);
    let gone = unique("clawops-snaptest-gone");
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, Some(&gone));

    let snap = snapshot::take(&engine, state.path(), "op1", std::slice::from_ref(&dir), 3)
        .await
        .unwrap();
    assert_eq!(snap.dirs[0].method, Method::Filesystem);
    let mut archive = tar::Archive::new(std::fs::File::open(&snap.path).unwrap());
    let root = dir.strip_prefix("/").unwrap();
    let mut seen = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        // Without the file type bits the filesystem's st_mode carries.
        let mode = entry.header().mode().unwrap() & 0o7777;
        let uid = entry.header().uid().unwrap();
        let mut data = String::new();
        entry.read_to_string(&mut data).unwrap();
        seen.insert(path, (mode, uid, data));
    }
    assert_eq!(
        seen[&root.join("credentials/token")],
        (0, 1001, "secret".to_string())
    );

    // Restore needs the engine, and an image for its helper container.
    let err = snapshot::restore(&engine, state.path(), &snap.path, "op2", 3)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::NoImage { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_newest_n_counting_the_state_a_restore_replaced() {
    let docker = testkit::docker::connect().await;
    let image = busybox().await;
    let project = unique("snaptest");
    let _guard = ProjectGuard::new(&project);
    let home = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    populate(&dir);
    let id = ServiceContainer::new(&project, SERVICE, &image.tag)
        .bind(&dir, MOUNT)
        .start()
        .await;
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, None);

    let mut taken = Vec::new();
    for i in 0..4 {
        let snap = snapshot::take(
            &engine,
            state.path(),
            &format!("op{i}"),
            std::slice::from_ref(&dir),
            2,
        )
        .await
        .unwrap();
        taken.push(snap.path);
    }
    assert_eq!(
        snapshot::list(state.path()).unwrap(),
        [taken[3].clone(), taken[2].clone()]
    );

    // keep = 1: the snapshot being restored is not pruned before it is read.
    stop(&docker, &id).await;
    let restored = snapshot::restore(&engine, state.path(), &taken[2], "op4", 1)
        .await
        .unwrap();
    assert_eq!(
        snapshot::list(state.path()).unwrap(),
        [restored.before.path]
    );

    let err = snapshot::restore(&engine, state.path(), &taken[2], "op5", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Missing(_)), "{err}");
}

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs (the tests run as root)");
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// The snapshot is refused before anything is written when the state exceeds
/// `[snapshots] max_mb` or the free space beside the snapshots; nothing partial is left.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_check_the_cap_and_free_space_first() {
    let docker = testkit::docker::connect().await;
    let project = unique("snaptest");
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".openclaw");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big.bin"), vec![7u8; 3 * 1024 * 1024]).unwrap();
    let adapter = clawops_agent::docker::Engine::new(docker.clone());
    let engine = engine(&adapter, &project, None);

    let state = tempfile::tempdir().unwrap();
    let dirs = std::slice::from_ref(&dir);
    let err = snapshot::take_capped(&engine, state.path(), "op1", dirs, 3, 2)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("max_mb"), "{err}");
    assert!(snapshot::list(state.path()).unwrap().is_empty());

    let disk = SmallDisk::new("1m");
    let err = snapshot::take(&engine, disk.0.path(), "op1", dirs, 3)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("free"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(disk.0.path().join("snapshots"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
