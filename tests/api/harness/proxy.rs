//! A TCP proxy in front of PostgreSQL that can partition the network for real: while partitioned
//! it stops forwarding in both directions without closing anything — no refusal, no reset, bytes
//! go nowhere until it heals (then they flow on, as TCP's retransmissions would deliver them).
//! A connection opened during the partition is accepted but reaches nothing. That is what a
//! network partition or a failover that moved the database's address looks like to the service,
//! and unlike stopping PostgreSQL (which refuses at once) nothing on the client's side notices by
//! itself.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct PartitionProxy {
    addr: SocketAddr,
    /// `true` while forwarding.
    open: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl PartitionProxy {
    /// Starts forwarding from a free local port to `upstream`, on the calling test's runtime.
    pub async fn start(upstream: SocketAddr) -> PartitionProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free local port for the proxy");
        let addr = listener.local_addr().expect("a bound address");
        let (open, gate) = watch::channel(true);
        let accept = tokio::spawn(async move {
            // Owned here: aborting the accept task (drop of the proxy) ends every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(forward(client, upstream, gate.clone()));
            }
        });
        PartitionProxy { addr, open, accept }
    }

    /// `database_url` (of the proxied server) with the proxy's address instead.
    pub fn url_for(&self, database_url: &str) -> String {
        let (scheme_auth, rest) = database_url
            .rsplit_once('@')
            .expect("a URL with user and password");
        let (_, path) = rest.split_once('/').expect("a URL with a database");
        format!("{scheme_auth}@{}/{path}", self.addr)
    }

    /// Stops forwarding in both directions; nothing is closed.
    pub fn partition(&self) {
        self.open.send_replace(false);
    }

    /// Forwards again, everything held included.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for PartitionProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The address in a `postgres://user:pass@host:port/db` URL.
pub fn address_of(database_url: &str) -> SocketAddr {
    let (_, rest) = database_url
        .rsplit_once('@')
        .expect("a URL with user and password");
    let (host_port, _) = rest.split_once('/').expect("a URL with a database");
    host_port.parse().expect("host:port of the database")
}

async fn forward(client: TcpStream, upstream: SocketAddr, gate: watch::Receiver<bool>) {
    // A connection opened during a partition reaches nothing until it heals.
    if wait_open(&mut gate.clone()).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, gate.clone()),
        pump(server_read, client_write, gate),
    );
}

/// Copies one direction; what was read during a partition is held until it heals, and nothing
/// more is read meanwhile (so the sender's data waits in its socket buffers). A side that closes
/// during a partition is not seen to close until it heals either: behind a real partition the
/// other end keeps its session (and its transaction) until something on its own side ends it.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if wait_open(&mut gate).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    if wait_open(&mut gate).await.is_ok() {
        let _ = to.shutdown().await;
    }
}

async fn wait_open(gate: &mut watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    gate.wait_for(|open| *open).await.map(|_| ())
}
