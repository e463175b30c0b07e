//! A program's stdin fed while it runs (`/live`), as a WASI stdin stream; while the program
//! waits for input, it gives back its run slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamResult};

/// A live run's hold on a run slot, given back while the program waits for input: people
/// sitting at an input prompt must not keep others from running. Implemented by the pipeline,
/// which owns the slots.
pub trait RunSlot: Send + Sync + 'static {
    /// The program waits for input: give the slot back.
    fn release(&self);
    /// Input arrived: resolves once the run holds a slot again.
    fn reacquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A program's stdin fed while it runs; shared by every handle the guest opens.
#[derive(Clone)]
pub struct LiveStdin {
    stream: Arc<AsyncStdinStream>,
    slot: Option<Arc<dyn RunSlot>>,
}

impl LiveStdin {
    /// The guest's end, and the writer that feeds it (dropping the writer is end of input).
    pub fn pipe() -> (Self, tokio::io::DuplexStream) {
        let (writer, reader) = tokio::io::duplex(64 << 10);
        let stream = Arc::new(AsyncStdinStream::new(ReadOnly(reader)));
        (Self { stream, slot: None }, writer)
    }

    /// The same stdin, giving `slot` back whenever the program waits for input.
    pub fn with_slot(self, slot: Arc<dyn RunSlot>) -> Self {
        Self {
            slot: Some(slot),
            ..self
        }
    }
}

impl IsTerminal for LiveStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for LiveStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        let inner = self.stream.p2_stream();
        match &self.slot {
            Some(slot) => Box::new(Releasing {
                inner,
                slot: slot.clone(),
            }),
            None => inner,
        }
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        self.stream.async_stream()
    }
}

/// The guest's stdin stream, releasing the run slot while a read has to wait.
struct Releasing {
    inner: Box<dyn InputStream>,
    slot: Arc<dyn RunSlot>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Releasing {
    async fn ready(&mut self) {
        let slot = self.slot.clone();
        let mut ready = self.inner.ready();
        let at_once =
            std::future::poll_fn(|cx| Poll::Ready(ready.as_mut().poll(cx).is_ready())).await;
        if !at_once {
            slot.release();
            ready.await;
            slot.reacquire().await;
        }
    }
}

#[wasmtime_wasi::async_trait]
impl InputStream for Releasing {
    fn read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        self.inner.read(size)
    }

    fn skip(&mut self, size: usize) -> StreamResult<usize> {
        self.inner.skip(size)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
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
