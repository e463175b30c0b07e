//! Live runs over a WebSocket (`GET /live`): compile status, stdout/stderr chunks as the program
//! writes them, interactive stdin, and a kill switch, all on one connection.
//!
//! WebSocket rather than Server-Sent Events because the client talks back while the program runs
//! (stdin, kill); SSE would need a second channel and a way to tie it to the run.
//!
//! Protocol, one JSON text message each:
//! - client → server: first `{"type": "run", ...}` with the fields of `POST /execute`; then any of
//!   `{"type": "stdin", "data": "..."}`, `{"type": "stdinClose"}` (end of input), `{"type": "kill"}`.
//! - server → client: `{"type": "compiling"}`, `{"type": "compiled", "success", "compilerOutput",
//!   "diagnostics"}`, `{"type": "stdout" | "stderr", "data": "..."}` as output arrives, and last
//!   `{"type": "done", ...}` with the whole `/execute` answer, `{"type": "killed"}`, or
//!   `{"type": "error", "error": "...", "status", "retryAfter"?}` (the status `/execute` would
//!   have answered, e.g. 400 or 503, and a 503's seconds to wait); then the server closes the
//!   socket.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};
use wasmtime_wasi::p2::InputStream;

use crate::compile::Diagnostic;
use crate::http::ApiError;
use crate::metrics::Metrics;
use crate::playground::{ExecuteRequest, Playground};

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// What a live run reports while it goes.
#[derive(Debug)]
pub enum LiveEvent {
    Compiled {
        success: bool,
        compiler_output: String,
        diagnostics: Vec<Diagnostic>,
    },
    Output {
        stream: StreamKind,
        bytes: Vec<u8>,
    },
}

/// Where a run sends its [`LiveEvent`]s; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveSink(UnboundedSender<LiveEvent>);

impl LiveSink {
    pub fn new() -> (Self, UnboundedReceiver<LiveEvent>) {
        let (tx, rx) = unbounded_channel();
        (Self(tx), rx)
    }

    /// Sends an event; a closed receiver (client gone) is not the run's problem.
    pub fn send(&self, event: LiveEvent) {
        let _ = self.0.send(event);
    }
}

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

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum ClientMessage {
    Run(serde_json::Value),
    Stdin { data: String },
    StdinClose,
    Kill,
}

/// Drives one live session until the run ends, the client kills it, or the client goes away
/// (dropping the run kills the compiler or stops the program).
pub async fn session(socket: WebSocket, playground: Arc<Playground>, metrics: Arc<Metrics>) {
    let (mut tx, mut rx) = socket.split();
    let send = |value: serde_json::Value| Message::Text(value.to_string().into());
    let request = match first_request(&mut rx).await {
        Ok(request) => request,
        Err(error) => {
            let _ = tx.send(send(error.live_message())).await;
            return;
        }
    };
    let (sink, mut events) = LiveSink::new();
    let (stdin, writer) = LiveStdin::pipe();
    let mut writer = Some(writer);
    if let Some(w) = writer.as_mut()
        && !request.stdin.is_empty()
        && w.write_all(request.stdin.as_bytes()).await.is_err()
    {
        return;
    }
    let _ = tx.send(send(json!({"type": "compiling"}))).await;
    let run = playground.execute_live(request, sink, stdin);
    tokio::pin!(run);
    let mut decoders = [Utf8Decoder::default(), Utf8Decoder::default()];
    let last = loop {
        tokio::select! {
            Some(event) = events.recv() => {
                if tx.send(send(event_json(event, &mut decoders))).await.is_err() {
                    return;
                }
            }
            message = rx.next() => match message.map(|m| m.map(parse_client)) {
                Some(Ok(Some(ClientMessage::Stdin { data }))) => {
                    if let Some(w) = writer.as_mut() {
                        // A program that stopped reading must not block the session.
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_millis(100),
                            w.write_all(data.as_bytes()),
                        )
                        .await;
                    }
                }
                Some(Ok(Some(ClientMessage::StdinClose))) => writer = None,
                Some(Ok(Some(ClientMessage::Kill))) => break json!({"type": "killed"}),
                Some(Ok(Some(ClientMessage::Run(_)))) | Some(Ok(None)) => {}
                // Closed or broken: dropping `run` stops everything.
                None | Some(Err(_)) => return,
            },
            result = &mut run => {
                while let Ok(event) = events.try_recv() {
                    let _ = tx.send(send(event_json(event, &mut decoders))).await;
                }
                break match result {
                    Ok(output) => {
                        // One log line per execution: the socket's request line came at the upgrade.
                        let _ = crate::http::record_execution(&metrics, &output);
                        let mut done = serde_json::to_value(output).unwrap_or_default();
                        done["type"] = "done".into();
                        done
                    }
                    Err(e) => ApiError::from(e).live_message(),
                };
            }
        }
    };
    let _ = tx.send(send(last)).await;
    let _ = tx.close().await;
}

/// Waits for the `run` message and turns it into a request.
async fn first_request(
    rx: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Result<ExecuteRequest, ApiError> {
    while let Some(message) = rx.next().await {
        let Ok(message) = message else {
            break;
        };
        match parse_client(message) {
            Some(ClientMessage::Run(body)) => {
                return crate::http::execute_request_from_json(body.to_string());
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the first message must be {\"type\": \"run\", ...}",
                ));
            }
            None => continue,
        }
    }
    Err(ApiError::bad_request(
        "the connection closed before a run message",
    ))
}

/// `None` for pings, pongs and anything that is not a known JSON message.
fn parse_client(message: Message) -> Option<ClientMessage> {
    match message {
        Message::Text(text) => serde_json::from_str(&text).ok(),
        _ => None,
    }
}

fn event_json(event: LiveEvent, decoders: &mut [Utf8Decoder; 2]) -> serde_json::Value {
    match event {
        LiveEvent::Compiled {
            success,
            compiler_output,
            diagnostics,
        } => json!({
            "type": "compiled",
            "success": success,
            "compilerOutput": compiler_output,
            "diagnostics": diagnostics,
        }),
        LiveEvent::Output { stream, bytes } => {
            let (kind, decoder) = match stream {
                StreamKind::Stdout => ("stdout", &mut decoders[0]),
                StreamKind::Stderr => ("stderr", &mut decoders[1]),
            };
            json!({"type": kind, "data": decoder.decode(&bytes)})
        }
    }
}

/// Decodes a byte stream chunk by chunk, holding back a multi-byte character split between
/// chunks until its end arrives.
#[derive(Default)]
struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn decode(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end (error_len None) waits for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_held_back() {
        let mut d = Utf8Decoder::default();
        let crab = "a🦀".as_bytes();
        assert_eq!(d.decode(&crab[..3]), "a");
        assert_eq!(d.decode(&crab[3..]), "🦀");
        assert_eq!(d.decode(b"\xff!"), "\u{fffd}!");
    }
}
