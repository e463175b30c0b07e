//! Shared helpers: a real server on a loopback port, and a small JSON client.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use wasm_playground::config::Config;
use wasm_playground::playground::Playground;

/// A server running on its own thread and runtime for the rest of the test process.
pub struct TestServer {
    pub url: String,
    pub work_dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// Starts a server with `config` (its work dir replaced by a fresh one, and its cache dir too
/// unless the config names one) on 127.0.0.1:0.
pub fn start(mut config: Config) -> TestServer {
    let work_dir = tempfile::Builder::new()
        .prefix("wp-test-work-")
        .tempdir()
        .expect("work dir")
        .keep();
    config.work_dir = Some(work_dir.clone());
    let cache_dir = config.cache_dir.clone().unwrap_or_else(|| {
        tempfile::Builder::new()
            .prefix("wp-test-cache-")
            .tempdir()
            .expect("cache dir")
            .keep()
    });
    config.cache_dir = Some(cache_dir.clone());
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let playground = Arc::new(Playground::new(config).expect("playground"));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            wasm_playground::http::serve(listener, playground, std::future::pending())
                .await
                .expect("serve");
        });
    });
    let addr = rx.recv().expect("server did not start");
    TestServer {
        url: format!("http://{addr}"),
        work_dir,
        cache_dir,
    }
}

/// The server with default limits, shared by every test of one test binary.
pub fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| start(Config::default()))
}

pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

/// POSTs a JSON body to `/execute`; returns the status and the parsed JSON answer.
pub async fn post_json(server: &TestServer, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/execute", server.url))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

/// Runs `code` with default options on the shared server and expects a 200.
pub async fn run(code: &str) -> Value {
    run_on(server(), json!({ "code": code })).await
}

pub async fn run_on(server: &TestServer, body: Value) -> Value {
    let (status, value) = post_json(server, body).await;
    assert_eq!(status, 200, "unexpected answer: {value}");
    value
}

/// Number of entries in the server's work dir (leftover temp dirs).
pub fn leftovers(server: &TestServer) -> usize {
    std::fs::read_dir(&server.work_dir)
        .map(|d| d.count())
        .unwrap_or(0)
}
