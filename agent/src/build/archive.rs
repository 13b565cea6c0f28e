//! The planned build context as a tar: written file by file from disk into a bounded channel
//! of chunks that becomes the build request body, so a large context is never held in memory
//! (nor twice). Owner root, modes and mtimes kept, as the docker CLI sends them.
use std::{
    fs::File,
    io::{self, Read, Write},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::context::{ContextError, ContextPlan, EntryKind, io_err};
use crate::chunks::ChunkWriter;

/// Writes the planned context as a tar into `out`, reading files as it goes.
pub fn write_tar<W: Write>(plan: &ContextPlan, out: W) -> Result<W, ContextError> {
    let mut tar = tar::Builder::new(out);
    for e in &plan.entries {
        let abs = plan.dir.join(&e.path);
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(e.mtime);
        header.set_uid(0);
        header.set_gid(0);
        let shown = e.path.display().to_string();
        match &e.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, &e.path, io::empty())
                    .map_err(ContextError::Send)?;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &e.path, target)
                    .map_err(ContextError::Send)?;
            }
            EntryKind::File { .. } => {
                let file = File::open(&abs).map_err(io_err(&abs))?;
                // The size now, not at planning time: an edit in between is fine as long as the
                // file does not change while it is read.
                let size = file.metadata().map_err(io_err(&abs))?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                let reader = Exact {
                    inner: file.take(size),
                    remaining: size,
                };
                tar.append_data(&mut header, &e.path, reader)
                    .map_err(|err| match err.kind() {
                        io::ErrorKind::UnexpectedEof => ContextError::Changed(shown),
                        _ => ContextError::Send(err),
                    })?;
            }
        }
    }
    tar.into_inner().map_err(ContextError::Send)
}

/// Reads exactly `remaining` bytes or fails: a file that shrinks while it is read would
/// otherwise corrupt the archive.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The tar's chunks, as the build request body.
pub type ContextStream = tokio_stream::wrappers::ReceiverStream<Result<Bytes, io::Error>>;
/// The task producing them: bytes sent, or why the archive could not be completed.
pub type ContextWriter = tokio::task::JoinHandle<Result<u64, ContextError>>;

/// The tar as a stream of chunks for the build request body, produced on a blocking thread with
/// a small bounded buffer (a large context is never held in memory). The handle reports how
/// many bytes were sent, or why the archive could not be completed (the stream then ends with
/// an error, so the engine never builds from a truncated context).
pub fn spawn_stream(plan: std::sync::Arc<ContextPlan>) -> (ContextStream, ContextWriter) {
    let (tx, rx) = mpsc::channel(8);
    let handle = tokio::task::spawn_blocking(move || {
        let writer = ChunkWriter::new(tx.clone(), "the engine stopped reading the build context");
        let result = write_tar(&plan, writer).and_then(|mut w| {
            w.flush().map_err(ContextError::Send)?;
            Ok(w.sent())
        });
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        result
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), handle)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::build::context::{ContextOptions, plan};

    fn write(dir: &Path, rel: &str, text: &str) {
        std::fs::write(dir.join(rel), text).unwrap();
    }

    fn opts(dir: &Path) -> ContextOptions {
        ContextOptions {
            context: dir.to_owned(),
            dockerfile: None,
            root: None,
        }
    }

    #[tokio::test]
    async fn streamed_tar_equals_written_tar() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\n");
        write(dir.path(), "big.bin", &"x".repeat(300_000));
        let plan = std::sync::Arc::new(plan(&opts(dir.path())).unwrap());
        let (mut stream, handle) = spawn_stream(plan.clone());
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let sent = handle.await.unwrap().unwrap();
        assert_eq!(sent as usize, got.len());
        assert_eq!(got, write_tar(&plan, Vec::new()).unwrap());
    }
}
