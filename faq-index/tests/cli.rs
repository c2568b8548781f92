//! Runs the built `faq-index` binary on a small KB written to a temporary directory.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faq-index-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const KB: &str = r#"
[[entry]]
id = "refund"
category = "after_sale"
lang = "zh"
questions = ["怎么申请退款", "退款在哪里申请"]
answer = "在订单页点申请退款。"

[[entry]]
id = "invoice"
category = "invoice"
lang = "zh"
questions = ["怎么开发票"]
answer = "在订单详情里申请开票。"

[[entry]]
id = "track"
category = "logistics"
lang = "en"
questions = ["where is my parcel", "track my order"]
answer = "See the order page."
keywords = ["tracking"]
"#;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faq-index"))
}

#[test]
fn query_json_prints_one_line_per_question_in_order() {
    let dir = temp_dir("json");
    std::fs::write(dir.join("kb.toml"), KB).unwrap();
    let questions = temp_dir("json-questions").join("q.jsonl");
    std::fs::write(
        &questions,
        "{\"question\":\"退款怎么申请\"}\n{\"question\":\"what is the capital of peru\"}\n{\"question\":\"發票怎麼開\"}\n",
    )
    .unwrap();
    let out = bin()
        .args(["query", "--kb"])
        .arg(&dir)
        .arg("--questions")
        .arg(&questions)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["question"], "退款怎么申请");
    assert_eq!(lines[0]["decision"], "answer");
    assert_eq!(lines[0]["matches"][0]["id"], "refund");
    assert!(lines[0]["matches"][0]["score"].is_number());
    assert_eq!(lines[1]["decision"], "handoff");
    assert_eq!(lines[2]["matches"][0]["id"], "invoice");
}

#[test]
fn query_text_and_eval() {
    let dir = temp_dir("eval");
    let kb = dir.join("kb.jsonl");
    std::fs::write(
        &kb,
        "{\"id\":\"refund\",\"category\":\"after_sale\",\"questions\":[\"怎么申请退款\"],\"answer\":\"a\",\"lang\":\"zh\"}\n\
         {\"id\":\"track\",\"category\":\"logistics\",\"questions\":[\"where is my parcel\"],\"answer\":\"b\",\"lang\":\"en\"}\n",
    )
    .unwrap();
    let out = bin()
        .args(["query", "--kb"])
        .arg(&kb)
        .arg("where is my parcel")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1. track"), "{text}");

    let questions = dir.join("q.jsonl");
    std::fs::write(
        &questions,
        "{\"question\":\"退款怎么申请\",\"expected\":\"refund\"}\n{\"question\":\"my parcel is where\",\"expected\":\"track\"}\n",
    )
    .unwrap();
    let oos = dir.join("oos.jsonl");
    std::fs::write(
        &oos,
        "{\"question\":\"how is glue made\",\"expected\":null}\n",
    )
    .unwrap();
    let out = bin()
        .args(["eval", "--kb"])
        .arg(&kb)
        .arg("--questions")
        .arg(&questions)
        .arg("--oos")
        .arg(&oos)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("top-1 accuracy      1.000"), "{text}");
    assert!(text.contains("oos handed off      1.000"), "{text}");
}

#[test]
fn a_bad_kb_fails_with_file_line_and_field() {
    let dir = temp_dir("bad");
    std::fs::write(dir.join("kb.toml"), KB.replace("keywords", "keyword")).unwrap();
    let out = bin()
        .args(["query", "--kb"])
        .arg(&dir)
        .arg("x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("kb.toml:") && err.contains("keyword"), "{err}");
}
