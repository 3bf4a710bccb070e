//! A load smoke test (ignored by default): authorized queries through the router in-process
//! with many concurrent callers. Run: `cargo test -p xinyi-node --release --test load -- --ignored --nocapture`.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Instant;
use xinyi_ledger::Category::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn queries_per_second() {
    // RUST_LOG=xinyi_node::engine=debug shows each block's build/store timings.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let t = Arc::new(start_with(xinyi_node::api::ApiConfig {
        rate_limit_per_sec: 0,
        ..Default::default()
    }));
    let mut consents = vec![];
    for i in 0..5 {
        let r = t
            .post(
                "/v1/consents",
                &write_body(&t.consent_entry(i, "bank-a", &[Registration, Tax], 1_000_000)),
            )
            .await;
        consents.push(r.body["id"].as_str().unwrap().to_string());
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let conc: usize = std::env::var("CONC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    // Pre-sign the requests so the client's signing is not measured.
    let bodies: Vec<_> = (0..n)
        .map(|i| t.query("bank-a", i % 5, &consents[i % 5], &[Tax]))
        .collect();
    let bodies = Arc::new(tokio::sync::Mutex::new(bodies));
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..conc {
        let t = t.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![];
            loop {
                let Some(b) = bodies.lock().await.pop() else {
                    break;
                };
                let s = Instant::now();
                let r = t.post("/v1/queries", &b).await;
                assert_eq!(r.status, 200, "{}", r.text);
                lat.push(s.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut lat = vec![];
    for task in tasks {
        lat.extend(task.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "{n} queries in {secs:.2} s: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, height {}",
        n as f64 / secs,
        p(0.5),
        p(0.99),
        t.get("/health").await.body["height"]
    );
}
