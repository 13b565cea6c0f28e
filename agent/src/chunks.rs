//! A blocking `Write` that hands 64 KiB chunks to an async task through a bounded channel: a
//! request body (build context, snapshot restore) made on a blocking thread as the engine reads
//! it, so a large archive is never held in memory.
use std::io::{self, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

pub struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    sent: u64,
    /// Said when the receiving side is gone, e.g. "the engine stopped reading the build context".
    receiver_gone: &'static str,
}

impl ChunkWriter {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>, receiver_gone: &'static str) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
            sent: 0,
            receiver_gone,
        }
    }

    /// Bytes handed over so far (after `flush`, all that was written).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.sent += chunk.len() as u64;
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, self.receiver_gone))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_writes_go_out_in_chunks_and_all_bytes_arrive() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut w = ChunkWriter::new(tx, "gone");
        let data: Vec<u8> = (0..CHUNK * 3 + 10).map(|i| i as u8).collect();
        for piece in data.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.sent(), data.len() as u64);
        drop(w);
        let (mut got, mut chunks) = (Vec::new(), 0);
        while let Ok(chunk) = rx.try_recv() {
            let chunk = chunk.unwrap();
            assert!(chunk.len() < CHUNK + 1000, "a chunk of {}", chunk.len());
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        // 66 pieces of 1000 bytes fill a chunk: two full ones, then the rest on flush.
        assert_eq!(chunks, 3);
        assert_eq!(got, data);
    }

    #[test]
    fn a_gone_receiver_is_a_broken_pipe_naming_it() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx, "the engine stopped reading");
        w.write_all(b"x").unwrap();
        let e = w.flush().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(e.to_string(), "the engine stopped reading");
    }
}
