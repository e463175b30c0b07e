//! The guest's stdout and stderr: a capped in-memory buffer shared between the WASI context
//! (which writes) and the runner (which reads it after the run).
//!
//! Bytes are stored raw and decoded to UTF-8 once, at the end, because a program may split a
//! multi-byte character across two writes. Past the cap the first bytes are kept, the stream is
//! marked truncated and the write traps, so a flooding program stops instead of burning CPU.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Receives a run's output as the program writes it (a live client, above this layer). Called
/// with the bytes that fit under the cap, in order, while the guest waits: it must not block.
pub trait OutputSink: Send + Sync {
    fn output(&self, stream: StreamKind, bytes: &[u8]);
}

/// The error a write past the cap traps with; the runner looks for it to classify the run.
#[derive(Debug, thiserror::Error)]
#[error("output limit of {limit} bytes exceeded")]
pub struct OutputLimitExceeded {
    pub limit: usize,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    truncated: bool,
    /// The program has ended: threads still running until their next check write nothing.
    closed: bool,
}

/// A cloneable handle to one captured stream; all clones share the same buffer.
#[derive(Clone)]
pub struct CaptureStream {
    buffer: Arc<Mutex<Buffer>>,
    limit: usize,
    /// Also sends what is kept to a live session as it is written.
    live: Option<(Arc<dyn OutputSink>, StreamKind)>,
}

impl CaptureStream {
    pub fn new(limit: usize, live: Option<(Arc<dyn OutputSink>, StreamKind)>) -> Self {
        Self {
            buffer: Arc::default(),
            limit,
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave the buffer inconsistent.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps what was written so far and drops every later write (a threaded program has
    /// ended, as a native process does when `main` returns or any thread calls `exit`).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Appends what fits under the cap; returns `false` when something had to be dropped.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut buffer = self.lock();
        if buffer.closed {
            return true;
        }
        let room = self.limit.saturating_sub(buffer.bytes.len());
        let take = room.min(bytes.len());
        buffer.bytes.extend_from_slice(&bytes[..take]);
        if let Some((sink, stream)) = &self.live
            && take > 0
        {
            sink.output(*stream, &bytes[..take]);
        }
        if take < bytes.len() {
            buffer.truncated = true;
        }
        take == bytes.len()
    }

    /// The captured text (invalid UTF-8 replaced) and whether it was truncated.
    pub fn contents(&self) -> (String, bool) {
        let buffer = self.lock();
        (
            String::from_utf8_lossy(&buffer.bytes).into_owned(),
            buffer.truncated,
        )
    }

    fn limit_error(&self) -> StreamError {
        StreamError::Trap(wasmtime::Error::new(OutputLimitExceeded {
            limit: self.limit,
        }))
    }
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(self.limit_error())
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept a full chunk so that the write which crosses the cap is seen and traps.
        if self.lock().truncated {
            Err(self.limit_error())
        } else {
            Ok(64 << 10)
        }
    }
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.append(buf) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(OutputLimitExceeded {
                limit: self.limit,
            })))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_first_bytes_and_marks_truncation() {
        let mut stream = CaptureStream::new(5, None);
        assert!(OutputStream::write(&mut stream, "abc".into()).is_ok());
        let err = OutputStream::write(&mut stream, "defg".into()).unwrap_err();
        assert!(matches!(err, StreamError::Trap(_)));
        assert_eq!(stream.contents(), ("abcde".to_string(), true));
    }

    #[test]
    fn multibyte_character_split_across_writes_decodes_once() {
        let mut stream = CaptureStream::new(100, None);
        let crab = "🦀".as_bytes();
        OutputStream::write(&mut stream, bytes::Bytes::copy_from_slice(&crab[..2])).unwrap();
        OutputStream::write(&mut stream, bytes::Bytes::copy_from_slice(&crab[2..])).unwrap();
        assert_eq!(stream.contents(), ("🦀".to_string(), false));
    }
}
