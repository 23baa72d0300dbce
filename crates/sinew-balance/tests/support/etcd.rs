//! A real `etcd` (Debian's `etcd-server`, which `scripts/setup.sh` installs)
//! on free loopback ports with its own data directory, stopped and removed
//! on drop. Shared by the registry tests of sinew-balance and of the `sinew`
//! facade (`#[path]`-included).
// Not every user of this file calls every method.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Instant};

/// An etcd process with its own data directory.
pub(crate) struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Start one and wait until it is healthy.
    pub(crate) async fn start() -> Etcd {
        let dir =
            std::env::temp_dir().join(format!("sinew-etcd-{}-{}", std::process::id(), free_port()));
        let mut e = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        e.spawn().await;
        e
    }

    /// Its client URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// (Re)start the process on the same ports and data, and wait until it
    /// is healthy.
    pub(crate) async fn spawn(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "sinew-test"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("sinew-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (scripts/setup.sh installs etcd-server)");
        self.child = Some(child);
        let started = Instant::now();
        while !self.healthy().await {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "etcd did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /health` on the client port says `"health":"true"`.
    async fn healthy(&self) -> bool {
        let ask = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.client_port))
                .await
                .ok()?;
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            Some(String::from_utf8_lossy(&out).contains("\"health\":\"true\""))
        };
        matches!(timeout(Duration::from_secs(2), ask).await, Ok(Some(true)))
    }

    /// Stop the process (the data stays for [`Etcd::spawn`]).
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
