//! A real Nacos-compatible server (`rnacos`, which `scripts/setup.sh`
//! installs with `cargo install rnacos --locked`) on free loopback ports
//! with its own data directory, stopped and removed on drop; and the raw
//! HTTP open API calls another client would make. Shared by the Nacos tests
//! of sinew-balance and of the `sinew` facade (`#[path]`-included).
// Not every user of this file calls every method.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// An rnacos process with its own data directory.
pub(crate) struct Nacos {
    child: Option<Child>,
    dir: PathBuf,
    /// The HTTP (open API) port; gRPC listens at `http_port + 1000`, where
    /// Nacos 2.x clients look for it.
    http_port: u16,
    console_port: u16,
    env: Vec<(String, String)>,
}

/// Whether `port` can be bound on loopback now.
fn is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free port `p` such that `p + 1000` is free too.
fn free_pair() -> u16 {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let p = l.local_addr().expect("local address").port();
        drop(l);
        if p < 64_000 && is_free(p) && is_free(p + 1000) {
            return p;
        }
    }
    panic!("no free pair of loopback ports (p, p + 1000)");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local address")
        .port()
}

impl Nacos {
    /// Start one without authentication, and wait until it answers.
    pub(crate) async fn start() -> Nacos {
        Self::start_with(&[]).await
    }

    /// Start one with these extra `RNACOS_*` settings (authentication,
    /// heartbeat timeouts), and wait until it answers.
    pub(crate) async fn start_with(env: &[(&str, &str)]) -> Nacos {
        let http_port = free_pair();
        let dir =
            std::env::temp_dir().join(format!("sinew-nacos-{}-{http_port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut n = Nacos {
            child: None,
            dir,
            http_port,
            console_port: free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        n.spawn().await;
        n
    }

    /// `127.0.0.1:<http port>`, what a client's `server_addr` names.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// (Re)start the process on the same ports and data, and wait until it
    /// answers.
    ///
    /// rnacos 0.8.8 sometimes panics in a thread while it starts (a race in
    /// its raft state machine, `raftapply.rs:421`, seen in about one start
    /// in five); it keeps serving the naming API but its users, tokens and
    /// limits stop working. Such a start is stopped and made again on
    /// fresh data (the half-made raft state would not create the admin
    /// user; the instances of the naming API live in memory anyway).
    pub(crate) async fn spawn(&mut self) {
        const ATTEMPTS: u32 = 10;
        for attempt in 1..=ATTEMPTS {
            if self.spawn_once().await {
                return;
            }
            eprintln!("rnacos panicked while starting (attempt {attempt}); starting it again");
            self.kill();
            let _ = std::fs::remove_dir_all(self.dir.join("data"));
            let _ = std::fs::remove_dir_all(self.dir.join("db"));
        }
        panic!(
            "rnacos panicked while starting {ATTEMPTS} times in a row; see {}",
            self.log_path().display()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("rnacos.log")
    }

    /// The log written since `from` bytes.
    fn log_since(&self, from: u64) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default()).into_owned()
    }

    /// One start; `false` when rnacos panicked while starting.
    async fn spawn_once(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("a log file");
        let from = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new("rnacos");
        cmd.current_dir(&self.dir)
            .env("RNACOS_HTTP_PORT", self.http_port.to_string())
            .env("RNACOS_GRPC_PORT", (self.http_port + 1000).to_string())
            .env("RNACOS_HTTP_CONSOLE_PORT", self.console_port.to_string())
            .env("RNACOS_SDK_HOST", "127.0.0.1")
            .env("RNACOS_CONSOLE_HOST", "127.0.0.1")
            .env("RNACOS_DATA_DIR", self.dir.join("data"))
            .env("RNACOS_CONFIG_DB_DIR", self.dir.join("db"))
            .env("RNACOS_HTTP_WORKERS", "1")
            .env("RUST_LOG", "warn")
            // The readiness check logs in until the admin user exists.
            .env("RNACOS_API_LOGIN_ONE_MINUTE_LIMIT", "100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start `rnacos` ({e}): the Nacos tests need it on PATH; \
                 scripts/setup.sh installs it (cargo install rnacos --locked)"
            ),
        };
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.log_since(from).contains("panicked") {
                return false;
            }
            if self.answers().await {
                // The panic comes within moments of the start, if at all.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return !self.log_since(from).contains("panicked");
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("rnacos exited ({status}): {}", self.log_since(from));
            }
            if started.elapsed() > Duration::from_secs(20) {
                let head: String = self
                    .log_since(from)
                    .lines()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("rnacos did not answer within 20 s; its log begins:\n{head}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The open API answers; with authentication on, the initial admin
    /// user (created a moment after the start) can log in.
    async fn answers(&self) -> bool {
        let setting = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        if let (Some(user), Some(password)) = (
            setting("RNACOS_INIT_ADMIN_USERNAME"),
            setting("RNACOS_INIT_ADMIN_PASSWORD"),
        ) {
            let form = format!("username={user}&password={password}");
            let got = self.raw("POST", "/nacos/v1/auth/login", &form).await;
            return matches!(got, Some((200, _)));
        }
        let got = self
            .raw("GET", "/nacos/v1/ns/service/list?pageNo=1&pageSize=10", "")
            .await;
        matches!(got, Some((200, _)))
    }

    /// One HTTP/1.1 request to the open API: `(status, body)`, or `None`
    /// when nothing answered within 2 s. `form` goes as the body.
    pub(crate) async fn raw(&self, method: &str, path: &str, form: &str) -> Option<(u16, String)> {
        let ask = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.http_port))
                .await
                .ok()?;
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            );
            s.write_all(req.as_bytes()).await.ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            let text = String::from_utf8_lossy(&out).into_owned();
            let status = text.get(9..12)?.parse().ok()?;
            let (head, body) = text.split_once("\r\n\r\n")?;
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            let body = if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            };
            Some((status, body))
        };
        timeout(Duration::from_secs(2), ask).await.ok().flatten()
    }

    /// Register an instance the way another Nacos client would (the HTTP
    /// open API): `form` holds the parameters after
    /// `serviceName=..&ip=..&port=..` (weight, clusterName, metadata, ...).
    pub(crate) async fn register_raw(&self, service: &str, address: &str, more: &str) {
        let (ip, port) = address.rsplit_once(':').expect("ip:port");
        let form = format!("serviceName={service}&ip={ip}&port={port}&ephemeral=true{more}");
        let got = self.raw("POST", "/nacos/v1/ns/instance", &form).await;
        assert_eq!(
            got.as_ref().map(|(s, b)| (*s, b.trim())),
            Some((200, "ok")),
            "register {service} {address}"
        );
    }

    /// Remove an instance the way another Nacos client would.
    pub(crate) async fn deregister_raw(&self, service: &str, address: &str, more: &str) {
        let (ip, port) = address.rsplit_once(':').expect("ip:port");
        let q = format!("serviceName={service}&ip={ip}&port={port}&ephemeral=true{more}");
        let got = self
            .raw("DELETE", &format!("/nacos/v1/ns/instance?{q}"), "")
            .await;
        assert_eq!(
            got.as_ref().map(|(s, _)| *s),
            Some(200),
            "deregister {service} {address}: {got:?}"
        );
    }

    /// The instance list as another client reads it (`query` after `?`).
    pub(crate) async fn list_raw(&self, query: &str) -> serde_json::Value {
        let (status, body) = self
            .raw("GET", &format!("/nacos/v1/ns/instance/list?{query}"), "")
            .await
            .expect("rnacos answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("an instance list")
    }

    /// Stop the process (the data stays for [`Nacos::spawn`]).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The body of a `Transfer-Encoding: chunked` answer (or the body as it is).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        let Some(chunk) = after.get(..n) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after.get(n + 2..).unwrap_or("");
    }
}

impl Drop for Nacos {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
