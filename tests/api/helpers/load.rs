//! Load under which a test changes something: workers issuing until told to stop, counting
//! their 200s as they come, and what every request got.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::wait_for;

/// What the requests of a load run got.
#[derive(Default, Debug)]
pub struct Answers {
    pub ok: usize,
    /// Status and body of anything but a 200, connection errors as status 0.
    pub other: Vec<(u16, String)>,
}

/// Workers asking `POST /v1/ecr/authorization-token` with one token, one request after
/// another each, until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<Answers>>,
}

impl Load {
    /// One worker per client, against the service at `address`.
    pub fn start(
        address: &str,
        token: &str,
        clients: impl IntoIterator<Item = reqwest::Client>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let url = format!("{address}/v1/ecr/authorization-token");
        let workers = clients
            .into_iter()
            .map(|http| {
                let (stop, ok, url, token) =
                    (stop.clone(), ok.clone(), url.clone(), token.to_owned());
                tokio::spawn(async move {
                    let mut answers = Answers::default();
                    while !stop.load(Ordering::SeqCst) {
                        match http.post(&url).bearer_auth(&token).send().await {
                            Ok(r) if r.status() == 200 => {
                                answers.ok += 1;
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => answers
                                .other
                                .push((r.status().as_u16(), r.text().await.unwrap_or_default())),
                            Err(e) => answers.other.push((0, format!("{e:?}"))),
                        }
                    }
                    answers
                })
            })
            .collect();
        Self { stop, ok, workers }
    }

    /// How many requests have answered 200 so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have answered 200; `None` if `timeout` passes first.
    pub async fn flowing(&self, n: usize, timeout: Duration) -> Option<()> {
        wait_for(timeout, async || (self.ok() >= n).then_some(())).await
    }

    /// Stops the workers and adds up what every request got.
    pub async fn stop(self) -> Answers {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Answers::default();
        for worker in self.workers {
            let answers = worker.await.expect("a load worker panicked");
            total.ok += answers.ok;
            total.other.extend(answers.other);
        }
        total
    }
}
