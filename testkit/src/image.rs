//! Busybox images `FROM scratch` built on the real engine (there is no registry to pull from).
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;

use crate::{cleanup::ImageGuard, docker};

/// Debian's busybox-static binary.
pub fn busybox_path() -> PathBuf {
    for p in ["/usr/bin/busybox", "/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is missing: `apt-get install -y busybox-static` (bash .ci/run does it)");
}

/// A file to put in the image.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl ImageFile {
    pub fn new(path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        Self {
            path: path.trim_start_matches('/').to_owned(),
            contents: contents.into(),
            mode,
        }
    }
}

/// The fixture Dockerfile (busybox `FROM scratch`), with extra files and an optional CMD.
pub fn dockerfile(files: &[ImageFile], cmd: &str) -> String {
    let mut df = String::from(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    );
    if !files.is_empty() {
        df.push_str("COPY files/ /\n");
    }
    df.push_str(&format!("CMD {cmd}\n"));
    df
}

/// Writes a build context (Dockerfile, busybox, files/) into `dir`.
pub fn write_context(dir: &Path, files: &[ImageFile], cmd: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(busybox_path(), dir.join("busybox")).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile(files, cmd)).unwrap();
    for f in files {
        let path = dir.join("files").join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).unwrap();
    }
}

/// A built image, removed on drop.
#[derive(Debug)]
pub struct TestImage {
    pub tag: String,
    pub id: String,
    _guard: ImageGuard,
}

/// Builds a busybox image tagged `tag` holding `files`, with `cmd` (Dockerfile JSON form).
pub async fn build(tag: &str, files: &[ImageFile], cmd: &str) -> TestImage {
    let dir = tempfile::tempdir().unwrap();
    write_context(dir.path(), files, cmd);
    let id = build_dir(dir.path(), tag).await;
    TestImage {
        tag: tag.to_owned(),
        id,
        _guard: ImageGuard::new([tag.to_owned()]),
    }
}

/// Builds the context in `dir` with the classic builder; panics with the build output on error.
pub async fn build_dir(dir: &Path, tag: &str) -> String {
    let mut archive = tar::Builder::new(Vec::new());
    archive.follow_symlinks(false);
    archive.append_dir_all(".", dir).unwrap();
    let body = archive.into_inner().unwrap();
    let mut attempt = 1;
    loop {
        match build_once(body.clone(), tag).await {
            Ok(id) => return id,
            // Tests that build identical contexts share cached layers, and one test's cleanup
            // can remove a layer another build is reusing at that moment: build again.
            Err(f) if attempt < 3 && f.message.contains("unknown parent image ID") => attempt += 1,
            Err(f) => panic!("building {tag} failed: {}\n{}", f.message, f.output),
        }
    }
}

struct BuildFailure {
    message: String,
    output: String,
}

async fn build_once(body: Vec<u8>, tag: &str) -> Result<String, BuildFailure> {
    let docker = docker::connect().await;
    let options = BuildImageOptionsBuilder::default()
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&std::collections::HashMap::from([(
            "clawops.test".to_string(),
            "1".to_string(),
        )]))
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(body.into())));
    let mut output = String::new();
    let mut id = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| BuildFailure {
            message: e.to_string(),
            output: output.clone(),
        })?;
        if let Some(s) = info.stream {
            output.push_str(&s);
        }
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            return Err(BuildFailure { message, output });
        }
        if let Some(bollard::models::BuildInfoAux::Default(image)) = info.aux
            && let Some(image_id) = image.id
        {
            id = image_id;
        }
    }
    Ok(id)
}
