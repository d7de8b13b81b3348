//! Connections are bounded: hundreds of clients trickling unfinished header sections
//! neither exhaust the service's memory nor keep real callers out, and beyond
//! `max_connections` a new connection waits until one closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::TestApp;

/// The start of a request whose header section never ends.
const UNFINISHED_HEAD: &[u8] =
    b"POST /v1/ecr/authorization-token HTTP/1.1\r\nHost: localhost\r\nX-Padding: ";

/// How long a trickling client keeps going before it counts the service as not bounding it.
const GIVE_UP: Duration = Duration::from_secs(20);

/// The service's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Sends an unfinished header section, `chunk` bytes every `every`, up to `total` bytes, and
/// returns how long it took the service to end the connection (an answer, a close or a
/// reset), or `None` if it never did.
async fn trickle(address: &str, chunk: usize, every: Duration, total: usize) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(UNFINISHED_HEAD).await.ok()?;
    let (mut read, mut write) = stream.split();
    let padding = vec![b'a'; chunk];
    let mut sent = 0;
    let mut ticks = tokio::time::interval(every);
    let mut answer = [0u8; 512];
    while started.elapsed() < GIVE_UP {
        tokio::select! {
            _ = read.read(&mut answer) => return Some(started.elapsed()),
            _ = ticks.tick() => {
                if sent < total {
                    if write.write_all(&padding).await.is_err() {
                        return Some(started.elapsed());
                    }
                    sent += chunk;
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn five_hundred_trickling_connections_neither_exhaust_memory_nor_keep_callers_out() {
    // Arrange: the real binary, so that its memory is measured alone.
    let service = TestApp::builder()
        .server("header_read_timeout_secs = 3")
        .spawn_process()
        .await;
    let pid = service.child.id().expect("running");
    let address = service.address.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/ecr/authorization-token", service.address);
    let token = service.issuer.token().sign();
    let warm = http.post(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(warm.status(), 200);
    let baseline = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // Act: half the clients push a 400 KiB header section fast, half trickle a few bytes at
    // a time; then 20 real callers ask while all of them are connected.
    let mut tricklers = Vec::new();
    for i in 0..500 {
        let address = address.clone();
        tricklers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                trickle(&address, 4096, Duration::from_millis(10), 400 * 1024).await
            } else {
                trickle(&address, 16, Duration::from_millis(100), usize::MAX).await
            }
        }));
    }
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                http.post(&url)
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for caller in callers {
        statuses.push(caller.await.unwrap());
    }
    let mut ended = Vec::new();
    for trickler in tricklers {
        ended.push(trickler.await.unwrap());
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();

    // Assert
    for status in &statuses {
        assert!(
            matches!(status, Ok(200)),
            "every real caller is served: {statuses:?}"
        );
    }
    let unbounded = ended.iter().filter(|e| e.is_none()).count();
    assert_eq!(
        unbounded, 0,
        "the service ends every unfinished header section"
    );
    let slowest = ended.iter().flatten().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(10),
        "a header section gets header_read_timeout_secs, not more: {slowest:?}"
    );
    let growth_mib = (peak.load(Ordering::Relaxed) - baseline) / 1024;
    eprintln!(
        "RSS {} MiB before, peak {} MiB under 500 trickling connections",
        baseline / 1024,
        peak.load(Ordering::Relaxed) / 1024
    );
    // Unbounded, the 250 fast clients alone would make the service buffer 100 MiB.
    assert!(growth_mib < 40, "RSS grew by {growth_mib} MiB");
}

#[tokio::test]
async fn beyond_max_connections_a_connection_waits_until_one_closes() {
    // Arrange: room for two connections, both taken by clients that send nothing.
    let app = TestApp::builder()
        .server("max_connections = 2\nheader_read_timeout_secs = 2")
        .spawn()
        .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // Let the service's own readiness connections go, so the two below hold every slot.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }

    // Act: a real request while both slots are taken; meanwhile note when the service
    // closes each idle connection.
    let request = tokio::spawn(async move {
        let response = http.get(format!("http://{address}/healthz")).send().await;
        (response.map(|r| r.status().as_u16()), Instant::now())
    });
    let mut closed_at = Vec::new();
    for mut connection in idle {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(15), connection.read(&mut byte))
            .await
            .expect("the service closes a connection that sends nothing");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        closed_at.push(Instant::now());
    }
    let (status, answered_at) = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("answered once a slot frees")
        .unwrap();

    // Assert: the request was served, and only after a slot was freed.
    assert_eq!(status.expect("GET /healthz"), 200);
    let first_closed = closed_at.into_iter().min().unwrap();
    assert!(
        answered_at >= first_closed,
        "answered {:?} before the first idle connection closed",
        first_closed - answered_at
    );
}
