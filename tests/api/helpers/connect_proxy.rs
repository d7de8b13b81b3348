//! A forward proxy that takes `CONNECT host:port` and tunnels the bytes, counting the tunnels
//! to each target: what an egress proxy sees of a client that sends HTTPS through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running CONNECT proxy on 127.0.0.1; stops when dropped.
pub struct ConnectProxy {
    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub url: String,
    tunnels: Arc<Mutex<HashMap<String, usize>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A request head larger than this is not a CONNECT any client sends.
const MAX_HEAD: usize = 8192;

impl ConnectProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind CONNECT proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(HashMap::new()));
        let counted = tunnels.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(tunnel(client, counted.clone()));
            }
        });
        Self {
            url,
            tunnels,
            server,
        }
    }

    /// How many tunnels were opened to `target` (`host:port`, as the client wrote it).
    pub fn tunnels_to(&self, target: &str) -> usize {
        self.tunnels
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// How many tunnels were opened to anywhere.
    pub fn tunnels(&self) -> usize {
        self.tunnels.lock().unwrap().values().sum()
    }
}

/// Reads one CONNECT request, opens the tunnel and copies bytes both ways until either
/// side closes. Anything else is answered 405 and not counted.
async fn tunnel(mut client: TcpStream, tunnels: Arc<Mutex<HashMap<String, usize>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let Ok(n) = client.read(&mut buf).await else {
            return;
        };
        if n == 0 || head.len() > MAX_HEAD {
            return;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    *tunnels
        .lock()
        .unwrap()
        .entry(target.to_owned())
        .or_default() += 1;
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
