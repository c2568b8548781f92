//! Query latency on the bundled KB and the AFQMC KB, and building a 10,000-entry index.
//!
//! Criterion reports means; the latency budget is a p99, so each query bench first runs every
//! question many times, sorts the latencies and prints p50/p99 (`cargo bench -p faq-index`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use faq_index::{Entry, Index, KnowledgeBase};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn datasets() -> PathBuf {
    workspace().join("../shared/datasets")
}

/// Prints p50/p99 over `rounds` passes of `questions`.
fn report_p99(name: &str, index: &Index, questions: &[String], rounds: usize) {
    let mut times = Vec::with_capacity(questions.len() * rounds);
    for _ in 0..rounds {
        for q in questions {
            let start = Instant::now();
            black_box(index.search(q, 5));
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    eprintln!(
        "{name}: {} searches, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn read_questions(path: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["question"].as_str().map(str::to_string))
            .collect(),
    )
}

fn bundled(c: &mut Criterion) {
    let dir = workspace().join("config/kb");
    let kb = match KnowledgeBase::load(&dir) {
        Ok(kb) => kb,
        Err(e) => {
            eprintln!("skipping the bundled-KB bench: {e}");
            return;
        }
    };
    let index = Index::build(&kb).unwrap();
    // The KB's own questions, plus some customer-style variations and out-of-scope ones.
    let mut questions: Vec<String> = kb
        .entries()
        .iter()
        .flat_map(|e| e.questions.iter().cloned())
        .collect();
    questions.extend(
        [
            "退貨運費誰出？",
            "快递三天了还没到",
            "where is my parcel",
            "发票抬头开错了能改吗",
            "今天天气怎么样",
            "how is glue made",
        ]
        .map(String::from),
    );
    report_p99("bundled KB", &index, &questions, 50);
    let mut i = 0;
    c.bench_function("search bundled KB", |b| {
        b.iter(|| {
            i = (i + 1) % questions.len();
            black_box(index.search(&questions[i], 5))
        })
    });
}

fn afqmc(c: &mut Criterion) {
    let dir = datasets().join("afqmc");
    let (Ok(kb), Some(questions)) = (
        KnowledgeBase::load(&dir.join("kb.jsonl")),
        read_questions(&dir.join("questions.dev.jsonl")),
    ) else {
        eprintln!("skipping the AFQMC bench: {} not found", dir.display());
        return;
    };
    let index = Index::build(&kb).unwrap();
    report_p99("AFQMC KB", &index, &questions, 5);
    let mut i = 0;
    c.bench_function("search AFQMC KB", |b| {
        b.iter(|| {
            i = (i + 1) % questions.len();
            black_box(index.search(&questions[i], 5))
        })
    });
}

/// 10,000 synthetic entries, half Chinese, half English, three paraphrases each.
fn synthetic_kb(n: usize) -> KnowledgeBase {
    const ZH: &[&str] = &[
        "退款",
        "发票",
        "快递",
        "物流",
        "优惠券",
        "尺码",
        "颜色",
        "质量",
        "售后",
        "换货",
        "直播",
        "积分",
        "会员",
        "地址",
        "付款",
        "分期",
        "库存",
        "预售",
        "赠品",
        "保修",
    ];
    const EN: &[&str] = &[
        "refund", "invoice", "parcel", "delivery", "coupon", "size", "colour", "quality",
        "warranty", "exchange", "points", "member", "address", "payment", "stock", "gift",
    ];
    let entries = (0..n)
        .map(|i| {
            let (a, b, c) = (i % 20, (i / 20) % 20, (i / 400) % 20);
            let (lang, questions) = if i % 2 == 0 {
                let (x, y, z) = (ZH[a], ZH[b], ZH[c]);
                (
                    "zh",
                    vec![
                        format!("{x}和{y}怎么处理{i}号"),
                        format!("请问{y}{z}的问题"),
                        format!("{z}能不能{x}"),
                    ],
                )
            } else {
                let (x, y, z) = (EN[a % 16], EN[b % 16], EN[c % 16]);
                (
                    "en",
                    vec![
                        format!("how do I handle {x} and {y} {i}"),
                        format!("question about {y} {z}"),
                        format!("can I {x} my {z}"),
                    ],
                )
            };
            Entry {
                id: format!("e{i}"),
                category: "after_sale".into(),
                questions,
                answer: format!("answer {i}"),
                lang: lang.into(),
                keywords: vec![],
                quick_replies: vec![],
                needs: None,
            }
        })
        .collect();
    KnowledgeBase::from_entries(entries).unwrap()
}

fn build(c: &mut Criterion) {
    let kb = synthetic_kb(10_000);
    let start = Instant::now();
    black_box(Index::build(&kb).unwrap());
    eprintln!(
        "build 10,000 entries: {:.0} ms (first build, incl. jieba dictionary)",
        start.elapsed().as_secs_f64() * 1e3
    );
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("build 10,000 entries", |b| {
        b.iter(|| black_box(Index::build(&kb).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bundled, afqmc, build);
criterion_main!(benches);
