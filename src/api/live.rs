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

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::client::Client;
use super::error::ApiError;
use super::execute::{execute_request_from_json, record_execution};
use super::metrics::Metrics;
use crate::build::{Diagnostic, Report};
use crate::pipeline::{ClientId, ExecuteRequest, LiveObserver, Playground};
use crate::run::{LiveStdin, OutputSink, RunStats, StreamKind};

/// What a live run reports while it goes.
#[derive(Debug)]
pub(super) enum LiveEvent {
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

/// Where a run sends its [`LiveEvent`]s: a channel the session drains into the socket.
pub(super) struct LiveSink {
    events: UnboundedSender<LiveEvent>,
    /// The run's CPU time and memory so far (`/websocket` reports them).
    pub(super) stats: Arc<RunStats>,
}

impl LiveSink {
    pub(super) fn new() -> (Arc<Self>, UnboundedReceiver<LiveEvent>) {
        let (events, rx) = unbounded_channel();
        let stats = Arc::default();
        (Arc::new(Self { events, stats }), rx)
    }
}

// A closed receiver (client gone) is not the run's problem: sends may fail silently.
impl OutputSink for LiveSink {
    fn output(&self, stream: StreamKind, bytes: &[u8]) {
        let _ = self.events.send(LiveEvent::Output {
            stream,
            bytes: bytes.to_vec(),
        });
    }
}

impl LiveObserver for LiveSink {
    fn compiled(&self, report: &Report) {
        let _ = self.events.send(LiveEvent::Compiled {
            success: report.success,
            compiler_output: report.rendered.clone(),
            diagnostics: report.diagnostics.clone(),
        });
    }

    fn stats(&self) -> Option<Arc<RunStats>> {
        Some(self.stats.clone())
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

/// `GET /live`: upgrades to this module's WebSocket protocol.
pub(super) async fn live(
    ws: WebSocketUpgrade,
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    Client(client): Client,
) -> Response {
    ws.on_upgrade(move |socket| session(socket, playground, metrics, client))
}

/// Drives one live session until the run ends, the client kills it, or the client goes away
/// (dropping the run kills the compiler or stops the program).
async fn session(
    socket: WebSocket,
    playground: Arc<Playground>,
    metrics: Arc<Metrics>,
    client: ClientId,
) {
    let (mut tx, mut rx) = socket.split();
    let send = |value: serde_json::Value| Message::Text(value.to_string().into());
    let idle = playground.config().ws_idle_timeout();
    let first = tokio::time::timeout(idle, first_request(&mut rx)).await;
    let first = first.unwrap_or_else(|_| {
        Err(ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!("no run message within {} s", idle.as_secs_f64()),
        ))
    });
    let request = match first {
        Ok(request) => ExecuteRequest { client, ..request },
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
                        let _ = record_execution(&metrics, &output);
                        let mut done = serde_json::to_value(output).unwrap_or_default();
                        done["type"] = "done".into();
                        done
                    }
                    Err(e) => {
                        let error = ApiError::from(e);
                        if let Some(limit) = error.limit() {
                            metrics.observe_rejection(limit);
                        }
                        error.live_message()
                    }
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
                return execute_request_from_json(body.to_string());
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
pub(super) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub(super) fn decode(&mut self, bytes: &[u8]) -> String {
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
