//! A program's stdin fed while it runs (`/live`), as a WASI stdin stream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};
use wasmtime_wasi::p2::InputStream;

/// A program's stdin fed while it runs; shared by every handle the guest opens.
#[derive(Clone)]
pub struct LiveStdin(Arc<AsyncStdinStream>);

impl LiveStdin {
    /// The guest's end, and the writer that feeds it (dropping the writer is end of input).
    pub fn pipe() -> (Self, tokio::io::DuplexStream) {
        let (writer, reader) = tokio::io::duplex(64 << 10);
        (
            Self(Arc::new(AsyncStdinStream::new(ReadOnly(reader)))),
            writer,
        )
    }
}

impl IsTerminal for LiveStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for LiveStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        self.0.p2_stream()
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        self.0.async_stream()
    }
}

/// The read half of a duplex pipe (its write half is never used).
struct ReadOnly(tokio::io::DuplexStream);

impl AsyncRead for ReadOnly {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}
