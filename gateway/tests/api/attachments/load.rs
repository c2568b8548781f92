//! Memory and time of many uploads at once (`--ignored`: a measurement, not a check of
//! behaviour): 50 concurrent 5 MiB uploads, the gateway in this process.
//!
//! `cargo test -p gateway --test api attachments::load -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use super::*;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn run(kind: &str, body: Arc<Vec<u8>>, n: usize) {
    let n = std::env::var("KEFU_LOAD_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    let (app, _) = app_with_agent(
        &format!("att-load-{kind}"),
        &[("KEFU__ATTACHMENTS__PER_MINUTE", "1000")],
    )
    .await;
    let mut customers = Vec::new();
    for _ in 0..n {
        customers.push(app.connect_customer("").await);
    }
    let before = rss_kib("VmRSS:");
    let started = Instant::now();
    let mut tasks = Vec::new();
    let addr = app.addr;
    for (_, greeting) in &customers {
        let body = body.clone();
        let greeting = greeting.clone();
        let app = crate::helpers::external(addr);
        let mime = if kind == "pdf" {
            "application/pdf"
        } else {
            "image/jpeg"
        };
        tasks.push(tokio::spawn(async move {
            customer_upload(&app, &greeting, "load", mime, &body)
                .await
                .status
        }));
    }
    let mut peak = before;
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
        peak = peak.max(rss_kib("VmRSS:"));
    }
    let elapsed = started.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    println!(
        "{n} concurrent {} MiB {kind} uploads: {ok} ok in {:.1} s; RSS {} MiB before, peak seen {} MiB, high-water {} MiB",
        body.len() >> 20,
        elapsed.as_secs_f64(),
        before / 1024,
        peak / 1024,
        rss_kib("VmHWM:") / 1024
    );
    assert_eq!(ok, n, "{statuses:?}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn fifty_concurrent_five_mib_pdf_uploads() {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.resize(5 << 20, b'x');
    run("pdf", Arc::new(pdf), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn fifty_concurrent_five_mib_photo_uploads() {
    // Noise compresses badly: grow the photo until it is about 5 MiB of JPEG.
    let mut side = 1200;
    let photo = loop {
        let photo = jpeg_with_gps(side * 4 / 3, side);
        if photo.len() >= 5 << 20 || side > 4000 {
            break photo;
        }
        side += 200;
    };
    run("photo", Arc::new(photo), 50).await;
}
