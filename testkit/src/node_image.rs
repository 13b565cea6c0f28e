//! A gateway image shaped like OpenClaw's: runs as `node` (uid 1000, in /etc/passwd), answers
//! the compose file's `node dist/index.js gateway …` through a `node` shim, and behaves as
//! [`crate::gateway`] says for `mode`. Removed on drop.
use crate::{cleanup::ImageGuard, image::ImageFile};

pub struct NodeImage {
    pub tag: String,
    pub id: String,
    _guard: ImageGuard,
}

/// Builds a node-user gateway image in `mode` (`ok`, `exit`, `never-ready`, …).
pub async fn build(mode: &str) -> NodeImage {
    let tag = format!("{}:test", crate::unique("clawops-node-gw"));
    let dir = tempfile::tempdir().unwrap();
    let mut files = crate::gateway::files(mode, "1.0.0");
    files.push(ImageFile::new(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n",
        0o644,
    ));
    files.push(ImageFile::new(
        "etc/group",
        "root:x:0:\nnode:x:1000:\n",
        0o644,
    ));
    files.push(ImageFile::new(
        "usr/local/bin/node",
        "#!/bin/sh\nexec /bin/sh /gateway.sh\n",
        0o755,
    ));
    crate::image::write_context(dir.path(), &files, crate::gateway::CMD);
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             COPY files/ /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"mkdir -p /tmp /home/node && chmod 1777 /tmp && chown 1000:1000 /home/node\"]\n\
             USER node\nCMD {}\n",
            crate::gateway::CMD
        ),
    )
    .unwrap();
    let id = crate::image::build_dir(dir.path(), &tag).await;
    NodeImage {
        _guard: ImageGuard::new([tag.clone()]),
        tag,
        id,
    }
}
