//! play.rust-lang.org's WebSocket (`GET /websocket`), so that its own frontend streams runs from
//! us: output as it is written, stdin, kill, and the feature flags that turn on multi-file mode.
//!
//! Every message is a JSON object `{type, payload?, meta: {sequenceNumber}}`:
//! - the client first sends `websocket/connected` with `{"iAcceptThisIsAnUnsupportedApi": true}`;
//!   we echo it (the client counts itself connected only then) and send `featureFlags`;
//! - `output/execute/wsExecuteRequest` starts a run (a running one is stopped first); we answer
//!   with `wsExecuteBegin`, `wsExecuteStderr` (the compiler's diagnostics first) and
//!   `wsExecuteStdout` chunks, `wsExecuteStatus` about once a second, and always a last
//!   `wsExecuteEnd {success, exitDetail}`, all with the request's sequence number;
//! - `wsExecuteStdin` (a string), `wsExecuteStdinClose` and `wsExecuteKill` act on the run with
//!   their sequence number;
//! - what we cannot understand gets `websocket/error {error}`; the socket stays open.
//!
//! Unlike `/live`, one socket serves any number of runs, one at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc::UnboundedReceiver;

use super::client::Client;
use super::error::ApiError;
use super::execute::{execute_request_from_json, record_execution};
use super::live::{LiveEvent, LiveSink, Utf8Decoder};
use super::metrics::Metrics;
use crate::build::{CrateKind, Mode};
use crate::pipeline::{ClientId, ExecuteRequest, ExecutionOutput, Playground, PlaygroundError};
use crate::run::{LiveStdin, RunStats, StreamKind};

/// How long a client has to send its `websocket/connected` before the socket is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a run's `wsExecuteStatus` is sent.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// The sequence number of messages that answer no request.
const SERVER_SEQUENCE: i64 = -1;

/// What a killed run reports, in the words native Linux (and play.rust-lang.org) use.
const KILLED: &str = "Exited with signal 9 (SIGKILL): kill program";

const REQUEST: &str = "output/execute/wsExecuteRequest";

/// `GET /websocket`.
pub(super) async fn websocket(
    ws: WebSocketUpgrade,
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    Client(client): Client,
) -> Response {
    ws.on_upgrade(move |socket| async move {
        let (tx, mut rx) = socket.split();
        let mut session = Session {
            tx,
            client,
            run: None,
            ticker: tokio::time::interval(STATUS_INTERVAL),
        };
        if session.handshake(&mut rx, &playground).await.is_ok() {
            session.serve(rx, playground, metrics).await;
        }
    })
}

type RunFuture = Pin<Box<dyn Future<Output = Result<ExecutionOutput, PlaygroundError>> + Send>>;

/// The run of one `wsExecuteRequest`; dropping it stops the compiler or the program.
struct Run {
    sequence: i64,
    future: RunFuture,
    events: UnboundedReceiver<LiveEvent>,
    stdin: Option<DuplexStream>,
    decoders: [Utf8Decoder; 2],
    stats: Arc<RunStats>,
    cargo: CargoLines,
}

/// Cargo's status lines around the compiler's output, as play.rust-lang.org's frontend shows
/// them (its server runs cargo). Without them a library that builds cleanly would show nothing
/// at all: the frontend hides an output pane with nothing in it.
struct CargoLines {
    mode: Mode,
    kind: CrateKind,
    started: Instant,
    /// The first build of the run was reported (a package's tests may build twice).
    reported: bool,
}

impl CargoLines {
    fn around(&mut self, success: bool, compiler_output: String) -> String {
        let first = !std::mem::replace(&mut self.reported, true);
        let mut text = String::new();
        if first {
            text.push_str("   Compiling playground v0.0.1 (/playground)\n");
        }
        text.push_str(&compiler_output);
        if success && first {
            let profile = match (self.mode, self.kind.is_tests()) {
                (Mode::Release, _) => "`release` profile [optimized]",
                (Mode::Debug, true) => "`test` profile [unoptimized + debuginfo]",
                (Mode::Debug, false) => "`dev` profile [unoptimized + debuginfo]",
            };
            let secs = self.started.elapsed().as_secs_f64();
            text.push_str(&format!("    Finished {profile} target(s) in {secs:.2}s\n"));
        }
        if success && self.kind == CrateKind::Program {
            let dir = match self.mode {
                Mode::Debug => "debug",
                Mode::Release => "release",
            };
            text.push_str(&format!("     Running `target/{dir}/playground`\n"));
        }
        text
    }
}

/// The socket was closed or broke: the session is over.
struct Gone;

struct Session {
    tx: SplitSink<WebSocket, Message>,
    /// Whom the runs count against (per-client limits).
    client: ClientId,
    run: Option<Run>,
    /// When the current run's next `wsExecuteStatus` is due.
    ticker: tokio::time::Interval,
}

impl Session {
    async fn send(
        &mut self,
        kind: &str,
        payload: Option<Value>,
        sequence: i64,
    ) -> Result<(), Gone> {
        let mut message = json!({"type": kind, "meta": {"sequenceNumber": sequence}});
        if let Some(payload) = payload {
            message["payload"] = payload;
        }
        self.tx
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|_| Gone)
    }

    /// Waits for the client's `websocket/connected`, echoes it and sends the feature flags.
    async fn handshake(
        &mut self,
        rx: &mut SplitStream<WebSocket>,
        playground: &Playground,
    ) -> Result<(), Gone> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Connected {
            r#type: String,
            payload: Accept,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Accept {
            i_accept_this_is_an_unsupported_api: bool,
        }
        let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, rx.next()).await;
        let Ok(Some(Ok(Message::Text(text)))) = first else {
            return Err(Gone);
        };
        match serde_json::from_str::<Connected>(&text) {
            Ok(c)
                if c.r#type == "websocket/connected"
                    && c.payload.i_accept_this_is_an_unsupported_api => {}
            _ => return Err(Gone),
        }
        self.tx.send(Message::Text(text)).await.map_err(|_| Gone)?;
        let threshold = playground.config().multifile_threshold;
        self.send(
            "featureFlags",
            Some(json!({"multifileThreshold": threshold})),
            SERVER_SEQUENCE,
        )
        .await
    }

    /// Answers the client's messages and reports the current run until the socket goes away.
    async fn serve(
        &mut self,
        mut rx: SplitStream<WebSocket>,
        playground: Arc<Playground>,
        metrics: Arc<Metrics>,
    ) {
        // Closing the socket drops (stops) a run still going.
        let session_end = tokio::time::sleep(playground.config().ws_session_timeout());
        tokio::pin!(session_end);
        loop {
            let step = tokio::select! {
                () = &mut session_end => Err(Gone),
                message = rx.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_message(&text, &playground).await,
                    Some(Ok(_)) => Ok(()),
                    None | Some(Err(_)) => Err(Gone),
                },
                step = next_step(self.run.as_mut()) => match step {
                    RunStep::Output(event) => self.forward(event).await,
                    RunStep::Done(result) => self.end(result, &metrics).await,
                },
                _ = self.ticker.tick(), if self.run.is_some() => self.status().await,
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn on_message(&mut self, text: &str, playground: &Arc<Playground>) -> Result<(), Gone> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            sequence_number: i64,
        }
        #[derive(Deserialize)]
        struct ClientMessage {
            r#type: String,
            #[serde(default)]
            payload: Value,
            meta: Meta,
        }
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(e) => {
                let error = format!("Unable to deserialize request: {e}");
                return self.error(error, SERVER_SEQUENCE).await;
            }
        };
        let sequence = message.meta.sequence_number;
        let current = self.run.as_ref().is_some_and(|r| r.sequence == sequence);
        match message.r#type.as_str() {
            REQUEST => self.start(message.payload, sequence, playground).await,
            "output/execute/wsExecuteStdin" => {
                let Value::String(data) = message.payload else {
                    let error = "Unable to deserialize request: the stdin payload must be a string";
                    return self.error(error.into(), sequence).await;
                };
                if let Some(writer) = self
                    .run
                    .as_mut()
                    .filter(|_| current)
                    .and_then(|r| r.stdin.as_mut())
                {
                    // A program that stopped reading must not block the session.
                    let write = writer.write_all(data.as_bytes());
                    let _ = tokio::time::timeout(Duration::from_millis(100), write).await;
                }
                Ok(())
            }
            "output/execute/wsExecuteStdinClose" => {
                if let Some(run) = self.run.as_mut().filter(|_| current) {
                    run.stdin = None;
                }
                Ok(())
            }
            "output/execute/wsExecuteKill" if current => self.stop(KILLED).await,
            "output/execute/wsExecuteKill" => Ok(()),
            other => {
                let error =
                    format!("Unable to deserialize request: unknown message type `{other}`");
                self.error(error, SERVER_SEQUENCE).await
            }
        }
    }

    /// Starts the run of a `wsExecuteRequest`, stopping the current one.
    async fn start(
        &mut self,
        payload: Value,
        sequence: i64,
        playground: &Arc<Playground>,
    ) -> Result<(), Gone> {
        self.stop(KILLED).await?;
        let request = match execute_request_from_json(payload.to_string()) {
            Ok(request) => ExecuteRequest {
                client: self.client,
                ..request
            },
            Err(error) => return self.refuse(&error, sequence).await,
        };
        let (sink, events) = LiveSink::new();
        let (stdin, writer) = LiveStdin::pipe();
        let playground = playground.clone();
        let stats = sink.stats.clone();
        let cargo = CargoLines {
            mode: request.mode,
            kind: request.kind,
            started: Instant::now(),
            reported: false,
        };
        self.run = Some(Run {
            sequence,
            future: Box::pin(async move { playground.execute_live(request, sink, stdin).await }),
            events,
            stdin: Some(writer),
            decoders: Default::default(),
            stats,
            cargo,
        });
        self.send("output/execute/wsExecuteBegin", None, sequence)
            .await?;
        self.ticker.reset();
        self.status().await
    }

    /// Stops the current run, if any, and ends it with `exit_detail`.
    async fn stop(&mut self, exit_detail: &str) -> Result<(), Gone> {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        // Dropping the future stops the compiler or the program.
        run.future = Box::pin(std::future::pending());
        while let Ok(event) = run.events.try_recv() {
            self.send_output(event, &mut run).await?;
        }
        let end = json!({"success": false, "exitDetail": exit_detail});
        self.send("output/execute/wsExecuteEnd", Some(end), run.sequence)
            .await
    }

    async fn forward(&mut self, event: LiveEvent) -> Result<(), Gone> {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        let sent = self.send_output(event, &mut run).await;
        self.run = Some(run);
        sent
    }

    async fn send_output(&mut self, event: LiveEvent, run: &mut Run) -> Result<(), Gone> {
        let (kind, text) = match event {
            // The compiler's diagnostics come first on stderr, as under cargo.
            LiveEvent::Compiled {
                success,
                compiler_output,
                ..
            } => (
                "wsExecuteStderr",
                run.cargo.around(success, compiler_output),
            ),
            LiveEvent::Output { stream, bytes } => match stream {
                StreamKind::Stdout => ("wsExecuteStdout", run.decoders[0].decode(&bytes)),
                StreamKind::Stderr => ("wsExecuteStderr", run.decoders[1].decode(&bytes)),
            },
        };
        if text.is_empty() {
            return Ok(());
        }
        let kind = format!("output/execute/{kind}");
        self.send(&kind, Some(Value::String(text)), run.sequence)
            .await
    }

    /// The current run finished by itself: its last output, then its end.
    async fn end(
        &mut self,
        result: Result<ExecutionOutput, PlaygroundError>,
        metrics: &Metrics,
    ) -> Result<(), Gone> {
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        while let Ok(event) = run.events.try_recv() {
            self.send_output(event, &mut run).await?;
        }
        match result {
            Ok(output) => {
                let _ = record_execution(metrics, &output);
                let end = json!({"success": output.success, "exitDetail": output.exit_detail});
                self.send("output/execute/wsExecuteEnd", Some(end), run.sequence)
                    .await
            }
            Err(error) => self.refuse(&ApiError::from(error), run.sequence).await,
        }
    }

    /// A request that could not run: its error, then its end, so the client stops waiting.
    async fn refuse(&mut self, error: &ApiError, sequence: i64) -> Result<(), Gone> {
        self.error(error.to_string(), sequence).await?;
        let end = json!({"success": false, "exitDetail": error.to_string()});
        self.send("output/execute/wsExecuteEnd", Some(end), sequence)
            .await
    }

    async fn error(&mut self, error: String, sequence: i64) -> Result<(), Gone> {
        self.send("websocket/error", Some(json!({"error": error})), sequence)
            .await
    }

    /// What the run has used so far, as play.rust-lang.org reports its process's user+system
    /// time and resident set: the guest's CPU time (0 while it compiles; the frontend offers to
    /// kill a run after 15 s of it) and the size of its linear memory.
    async fn status(&mut self) -> Result<(), Gone> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let status = json!({
            "totalTimeSecs": run.stats.cpu_time().as_secs_f64(),
            "residentSetSizeBytes": run.stats.memory_bytes(),
        });
        let sequence = run.sequence;
        self.send("output/execute/wsExecuteStatus", Some(status), sequence)
            .await
    }
}

enum RunStep {
    Output(LiveEvent),
    Done(Result<ExecutionOutput, PlaygroundError>),
}

/// What the current run does next: output (first, while there is some) or its end. Never
/// resolves without a run.
async fn next_step(run: Option<&mut Run>) -> RunStep {
    let Some(run) = run else {
        return std::future::pending().await;
    };
    tokio::select! {
        biased;
        Some(event) = run.events.recv() => RunStep::Output(event),
        result = &mut run.future => RunStep::Done(result),
    }
}

/// `POST /nowebsocket`: the frontend reports why it could not use the WebSocket (it then runs
/// programs over `/execute`). Logged for operators; the client ignores the answer.
pub(super) async fn nowebsocket(body: axum::body::Bytes) {
    #[derive(Deserialize)]
    struct Report {
        error: String,
    }
    match serde_json::from_slice::<Report>(&body) {
        Ok(report) => tracing::info!(error = %report.error, "a client could not use /websocket"),
        Err(_) => tracing::info!("a client could not use /websocket (no reason given)"),
    }
}
