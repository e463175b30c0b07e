//! Shares (`/meta/gist`) through the real binary, with the same test bodies on both back ends:
//! SQLite in a fresh data dir, and a real PostgreSQL server from Debian's packages
//! (`scripts/test` installs `postgresql`). Each PostgreSQL test initialises its own cluster in a
//! temp dir, runs it on a free loopback port (as the `postgres` user when the tests run as
//! root: PostgreSQL refuses to run as root), and stops it when the test ends, also on panic.

mod common;

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProcess, client, free_port};
use futures::future::join_all;
use serde_json::{Value, json};

const HELLO: &str = "fn main() {\n    println!(\"Hello, world!\");\n}\n";

/// A PostgreSQL cluster of its own in a temp dir, stopped (and the dir removed) when dropped.
struct Postgres {
    server: Option<Child>,
    bin: PathBuf,
    /// The `postgres` user's uid and gid when we are root.
    owner: Option<(u32, u32)>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("wp-test-pg-")
            .tempdir()
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let owner = (unsafe { libc::geteuid() } == 0).then(|| (id("-u"), id("-g")));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let mut pg = Self {
            server: None,
            bin,
            owner,
            port: free_port(),
            dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.run();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A command of the server's binaries, as the user owning the cluster.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the server (fsync off: a test's data need not survive the machine) and waits
    /// until it takes connections.
    fn run(&mut self) {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("server.log")).unwrap())
            .spawn()
            .expect("start postgres; ./scripts/test installs it with apt-get");
        self.server = Some(child);
        let give_up = Instant::now() + Duration::from_secs(30);
        while !self
            .command("pg_isready")
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .status()
            .unwrap()
            .success()
        {
            assert!(
                Instant::now() < give_up,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A fast shutdown (SIGINT: clients are disconnected), waited for.
    fn stop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: a signal to our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let give_up = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > give_up {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest installed PostgreSQL's `bin` directory (Debian keeps them by major version).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed; ./scripts/test installs it with apt-get")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort();
    let newest = versions.last().expect("no PostgreSQL version installed");
    Path::new("/usr/lib/postgresql")
        .join(newest.to_string())
        .join("bin")
}

/// `id FLAG postgres`: the uid or gid of the user Debian's package creates.
fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(out.status.success(), "no `postgres` user");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Where a test's shares live.
enum Backend {
    Sqlite(PathBuf),
    Postgres(Postgres),
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(common::scratch_dir("wp-test-shares-"))
    }

    fn postgres() -> Self {
        Backend::Postgres(Postgres::start())
    }

    /// A server of the real binary on this back end, with `extra` flags.
    fn serve(&self, extra: &[&str]) -> ServerProcess {
        let mut args = vec!["--channels".to_string(), "stable".to_string()];
        match self {
            Backend::Sqlite(dir) => {
                args.extend(["--data-dir".into(), dir.display().to_string()]);
            }
            Backend::Postgres(pg) => args.extend(["--database-url".into(), pg.url()]),
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::spawn(&args, &[])
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Runs each test body once per back end: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_back_ends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::postgres()).await
            })*
        }
    };
}

on_both_back_ends!(
    create_and_read,
    concurrent_creates,
    limits,
    shares_survive_a_restart
);

async fn post(base: &str, body: Value) -> (u16, Value) {
    common::post_to(base, "/meta/gist", body).await
}

async fn get(base: &str, id: &str) -> (u16, Value) {
    common::get_json(base, &format!("/meta/gist/{id}")).await
}

/// Creates a share of `body` and expects a 200; returns the answer.
async fn share(base: &str, body: Value) -> Value {
    let (status, answer) = post(base, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn id_of(answer: &Value) -> String {
    answer["id"].as_str().expect("an id").to_string()
}

/// The bytes a share of `code` counts against `--shares-max-bytes`: its JSON text.
fn bytes_of(code: &Value) -> usize {
    code.to_string().len()
}

async fn readyz(base: &str) -> Value {
    let resp = client().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The `shares` check's detail in `/readyz`.
async fn shares_detail(base: &str) -> String {
    let ready = readyz(base).await;
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "shares")
        .expect("a shares check");
    assert_eq!(check["ok"], true);
    check["detail"].as_str().unwrap().to_string()
}

async fn create_and_read(backend: Backend) {
    let server = backend.serve(&[]);
    let base = server.server.url.as_str();

    let answer = share(base, json!({ "code": HELLO })).await;
    let id = id_of(&answer);
    assert_eq!(id.len(), 10, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id}"
    );
    assert_eq!(
        answer,
        json!({ "id": id, "url": format!("{base}/?gist={id}"), "code": HELLO })
    );
    assert_eq!(get(base, &id).await, (200, answer.clone()));
    // The same content again, also through upstream's `/meta/gist/`: the same share.
    assert_eq!(share(base, json!({ "code": HELLO })).await, answer);
    let resp = client()
        .post(format!("{base}/meta/gist/"))
        .json(&json!({ "code": HELLO }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), answer);

    // Options make another share, and its link carries them as the page's permalinks do.
    let with_options = share(
        base,
        json!({ "code": HELLO, "version": "stable", "mode": "release", "edition": "2021" }),
    )
    .await;
    let other = id_of(&with_options);
    assert_ne!(other, id);
    assert_eq!(
        with_options,
        json!({
            "id": other,
            "url": format!("{base}/?version=stable&mode=release&edition=2021&gist={other}"),
            "code": HELLO,
        })
    );
    assert_eq!(get(base, &other).await, (200, with_options));

    // Multi-file code comes back as the same list.
    let files = json!([
        { "name": "src/main.rs", "content": "mod utils;\nfn main() { println!(\"Hello to the whole {}\", utils::greeting()); }\n" },
        { "name": "src/utils.rs", "content": "pub fn greeting() -> &'static str { \"world\" }\n" },
    ]);
    let multi = share(base, json!({ "code": files, "edition": "2024" })).await;
    let multi_id = id_of(&multi);
    assert_eq!(multi["code"], files);
    assert_eq!(
        multi["url"],
        format!("{base}/?edition=2024&gist={multi_id}")
    );
    assert_eq!(get(base, &multi_id).await, (200, multi));

    // Unknown ids: a 404 with a JSON error.
    assert_eq!(
        get(base, "AAAAAAAAAA").await,
        (404, json!({ "error": "no share with the id `AAAAAAAAAA`" }))
    );
    assert_eq!(
        get(base, "no.such.thing").await,
        (404, json!({ "error": "no share with this id" }))
    );

    // Requests we cannot store.
    assert_eq!(
        post(base, json!({})).await,
        (400, json!({ "error": "`code` is missing or empty" }))
    );
    assert_eq!(
        post(base, json!({ "code": "  \n" })).await,
        (400, json!({ "error": "`code` is missing or empty" }))
    );
    assert_eq!(
        post(base, json!({ "code": HELLO, "edition": "1999" })).await,
        (
            400,
            json!({ "error": "unknown edition `1999`, expected one of 2015, 2018, 2021, 2024" })
        )
    );
    assert_eq!(
        post(
            base,
            json!({ "code": [{ "name": "", "content": "fn main() {}" }] })
        )
        .await,
        (
            400,
            json!({ "error": "a file in `code` has an empty `name`" })
        )
    );
    let resp = client()
        .post(format!("{base}/meta/gist"))
        .header("content-type", "application/json")
        .body("lolhello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body: "),
        "{error}"
    );

    let stored = [json!(HELLO), json!(HELLO), files];
    let bytes: usize =
        stored.iter().map(bytes_of).sum::<usize>() + "stable".len() + "release".len() + 4 + 4;
    assert_eq!(
        shares_detail(base).await,
        format!("{}: 3 shares, {bytes} of 1073741824 bytes", backend.name())
    );
    assert_eq!(readyz(base).await["shares"], "up");
}

async fn concurrent_creates(backend: Backend) {
    let server = backend.serve(&["--shares-per-minute", "0"]);
    let base = server.server.url.as_str();
    let codes: Vec<String> = (0..24)
        .map(|i| format!("fn main() {{ println!(\"{i}\"); }}\n"))
        .collect();
    let answers = join_all(
        codes
            .iter()
            .map(|code| share(base, json!({ "code": code }))),
    )
    .await;
    let ids: HashSet<String> = answers.iter().map(id_of).collect();
    assert_eq!(ids.len(), codes.len());
    for (code, answer) in codes.iter().zip(&answers) {
        let (status, read) = get(base, &id_of(answer)).await;
        assert_eq!((status, &read["code"]), (200, &json!(code)));
    }
    // The same program from many clients at once: one share.
    let same = join_all((0..12).map(|_| share(base, json!({ "code": HELLO })))).await;
    let ids: HashSet<String> = same.iter().map(id_of).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let bytes: usize =
        codes.iter().map(|c| bytes_of(&json!(c))).sum::<usize>() + bytes_of(&json!(HELLO));
    assert_eq!(
        shares_detail(base).await,
        format!("{}: 25 shares, {bytes} of 1073741824 bytes", backend.name())
    );
}

async fn limits(backend: Backend) {
    let a = "fn main() { let a = 1; }";
    let b = "fn main() { let b = 2; }";
    let c = "fn main() { let c = 3; }";
    let cap = bytes_of(&json!(a)) + bytes_of(&json!(b));
    let server = backend.serve(&[
        "--code-limit",
        "100",
        "--shares-per-minute",
        "4",
        "--shares-max-bytes",
        &cap.to_string(),
    ]);
    let base = server.server.url.as_str();

    // Over the code limit (not counted against the rate).
    let long = format!("fn main() {{}}{}", " ".repeat(89));
    assert_eq!(
        post(base, json!({ "code": long })).await,
        (
            413,
            json!({ "error": "`code` is 101 bytes; the limit is 100 bytes" })
        )
    );
    let files = json!([
        { "name": "src/main.rs", "content": "x".repeat(60) },
        { "name": "src/lib.rs", "content": "y".repeat(30) },
    ]);
    assert_eq!(
        post(base, json!({ "code": files })).await,
        (
            413,
            json!({ "error": "`code` is 111 bytes; the limit is 100 bytes" })
        )
    );

    // Two shares fill the store; the same content again is still answered.
    let first = share(base, json!({ "code": a })).await;
    share(base, json!({ "code": b })).await;
    assert_eq!(share(base, json!({ "code": a })).await, first);
    assert_eq!(
        post(base, json!({ "code": c })).await,
        (
            507,
            json!({ "error": format!("the share store is full ({cap} bytes of code, its limit); no new shares can be saved") })
        )
    );
    // Five requests in a minute from one address: the fifth is refused.
    let resp = client()
        .post(format!("{base}/meta/gist"))
        .json(&json!({ "code": a }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "15");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "error": "too many new shares from your address (at most 4 a minute); try again in 15 s" })
    );
    // Reading is not limited, and nothing was lost.
    assert_eq!(get(base, &id_of(&first)).await, (200, first));
}

async fn shares_survive_a_restart(backend: Backend) {
    let files = json!([{ "name": "src/main.rs", "content": HELLO }]);
    let (single, multi) = {
        let server = backend.serve(&[]);
        let base = server.server.url.as_str();
        let single = share(base, json!({ "code": HELLO, "edition": "2021" })).await;
        let multi = share(base, json!({ "code": files })).await;
        (single, multi)
        // Dropped here: the process is killed (SIGKILL), no orderly shutdown.
    };
    let server = backend.serve(&[]);
    let base = server.server.url.as_str();
    for before in [&single, &multi] {
        let id = id_of(before);
        let (status, after) = get(base, &id).await;
        assert_eq!(status, 200, "{after}");
        assert_eq!(after["code"], before["code"]);
        assert_eq!(after["id"], id);
    }
    // Sharing it again finds it.
    let again = share(base, json!({ "code": HELLO, "edition": "2021" })).await;
    assert_eq!(again["id"], single["id"]);
}

#[tokio::test]
async fn postgres_replicas_see_each_other_at_once() {
    let backend = Backend::postgres();
    // Both start together against a fresh database: they take turns to create the schema.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| backend.serve(&[]));
        let b = s.spawn(|| backend.serve(&[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.server.url.as_str(), b.server.url.as_str());
    for i in 0..10 {
        let code = format!("fn main() {{ println!(\"{i}\"); }}");
        let made = share(a, json!({ "code": code })).await;
        let (status, read) = get(b, &id_of(&made)).await;
        assert_eq!((status, &read["code"]), (200, &json!(code)));
    }
    // The same new programs on both at once: the same ids.
    let codes: Vec<String> = (0..8)
        .map(|i| format!("// both {i}\nfn main() {{}}"))
        .collect();
    let all = |base: &str| {
        let (base, codes) = (base.to_string(), codes.clone());
        async move { join_all(codes.iter().map(|c| share(&base, json!({ "code": c })))).await }
    };
    let (from_a, from_b) = tokio::join!(all(a), all(b));
    let ids_a: Vec<_> = from_a.iter().map(id_of).collect();
    let ids_b: Vec<_> = from_b.iter().map(id_of).collect();
    assert_eq!(ids_a, ids_b);
    assert!(shares_detail(a).await.starts_with("postgres: 18 shares, "));
}

#[tokio::test]
async fn postgres_stopped_mid_test() {
    let mut backend = Backend::postgres();
    let server = backend.serve(&[]);
    let base = server.server.url.as_str();
    let made = share(base, json!({ "code": HELLO })).await;
    let id = id_of(&made);

    let Backend::Postgres(pg) = &mut backend else {
        unreachable!()
    };
    pg.stop();
    let unreachable = json!({
        "error": "sharing is unavailable on this server: the share database cannot be reached"
    });
    assert_eq!(
        post(base, json!({ "code": "fn main() {}" })).await,
        (503, unreachable.clone())
    );
    assert_eq!(get(base, &id).await, (503, unreachable));
    // Programs still run, and the replica stays ready.
    let out = common::run_on(&server.server, json!({ "code": HELLO })).await;
    assert_eq!(out["stdout"], "Hello, world!\n");
    let ready = readyz(base).await;
    assert_eq!(
        (&ready["ready"], &ready["shares"]),
        (&json!(true), &json!("down"))
    );

    // Back up: the pool reconnects, and the share is still there.
    pg.run();
    assert_eq!(get(base, &id).await, (200, made));
    assert_eq!(readyz(base).await["shares"], "up");
}

#[tokio::test]
async fn sqlite_data_dir_that_cannot_be_written() {
    let dir = common::scratch_dir("wp-test-shares-");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let data_dir = file.join("data");
    let server = ServerProcess::spawn(
        &[
            "--channels",
            "stable",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    );
    let base = server.server.url.as_str();
    let ready = readyz(base).await;
    assert_eq!(
        (&ready["ready"], &ready["shares"]),
        (&json!(true), &json!("down"))
    );
    assert_eq!(
        shares_detail(base).await,
        "sqlite: the data directory cannot be created (not a directory)"
    );
    let off = json!({
        "error": "sharing is unavailable on this server: the share database cannot be written"
    });
    assert_eq!(
        post(base, json!({ "code": HELLO })).await,
        (503, off.clone())
    );
    assert_eq!(get(base, "AAAAAAAAAA").await, (503, off));
    let out = common::run_on(&server.server, json!({ "code": HELLO })).await;
    assert_eq!(out["stdout"], "Hello, world!\n");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("sharing is off: the share database cannot be written"),
        "the log says why"
    );
}

#[test]
fn a_database_url_that_is_not_postgresql_stops_start_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-playground"))
        .args(["serve", "--addr", "127.0.0.1:0", "--channels", "stable"])
        .args(["--database-url", "mysql://user:secret@db/shares"])
        .env(
            "WASM_PLAYGROUND_CACHE_DIR",
            common::scratch_dir("wp-test-cache-"),
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with("error: --database-url must start with postgres:// or postgresql://\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "the password is never shown");
}
