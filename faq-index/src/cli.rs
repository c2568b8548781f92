//! The `faq-index` command line: `query` (one question, or a JSONL file of them) and `eval`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use faq_index::{Decision, Index, KnowledgeBase, Thresholds};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "faq-index",
    about = "Search and evaluate a kefu knowledge base"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// The knowledge base: a .jsonl file, or a directory such as config/kb/.
    #[arg(long)]
    kb: PathBuf,
    /// Confidence needed to answer (default: the library's).
    #[arg(long)]
    answer: Option<f32>,
    /// Confidence needed to suggest (default: the library's).
    #[arg(long)]
    suggest: Option<f32>,
}

#[derive(Subcommand)]
enum Command {
    /// Find the entries a question means.
    Query {
        #[command(flatten)]
        common: Common,
        /// A JSONL file of {"question": ...} lines.
        #[arg(long, conflicts_with = "text")]
        questions: Option<PathBuf>,
        /// Print one JSON line per question.
        #[arg(long)]
        json: bool,
        /// How many matches to print.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// The question.
        text: Option<String>,
    },
    /// Accuracy, answered share and precision, out-of-scope hand-off.
    Eval {
        #[command(flatten)]
        common: Common,
        /// A JSONL file of {"question": ..., "expected": id or null} lines.
        #[arg(long)]
        questions: PathBuf,
        /// Out-of-scope questions (all expected to be handed off).
        #[arg(long)]
        oos: Option<PathBuf>,
        /// Also print each miss.
        #[arg(long)]
        verbose: bool,
    },
}

#[derive(Deserialize)]
struct Question {
    question: String,
    #[serde(default)]
    expected: Option<String>,
}

#[derive(Serialize)]
struct JsonMatch<'a> {
    id: &'a str,
    score: f32,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    question: &'a str,
    decision: Decision,
    confidence: f32,
    matches: Vec<JsonMatch<'a>>,
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Query {
            common,
            questions,
            json,
            limit,
            text,
        } => {
            let index = open(&common)?;
            let questions = match (questions, text) {
                (Some(path), _) => read_questions(&path)?,
                (None, Some(text)) => vec![Question {
                    question: text,
                    expected: None,
                }],
                (None, None) => bail!("give a question, or --questions FILE.jsonl"),
            };
            query(&index, &questions, json, limit.max(1))
        }
        Command::Eval {
            common,
            questions,
            oos,
            verbose,
        } => {
            let index = open(&common)?;
            let questions = read_questions(&questions)?;
            let oos = oos.map(|p| read_questions(&p)).transpose()?;
            eval(&index, &questions, oos.as_deref(), verbose);
            Ok(())
        }
    }
}

fn open(common: &Common) -> anyhow::Result<Index> {
    let kb = KnowledgeBase::load(&common.kb)
        .with_context(|| format!("loading the knowledge base {}", common.kb.display()))?;
    let mut thresholds = Thresholds::default();
    if let Some(a) = common.answer {
        thresholds.answer = a;
    }
    if let Some(s) = common.suggest {
        thresholds.suggest = s;
    }
    let start = Instant::now();
    let index = Index::build_with(&kb, thresholds)?;
    eprintln!(
        "indexed {} entries in {:.0} ms",
        kb.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(index)
}

fn read_questions(path: &Path) -> anyhow::Result<Vec<Question>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

fn query(index: &Index, questions: &[Question], json: bool, limit: usize) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for q in questions {
        let outcome = index.search(&q.question, limit);
        if json {
            let line = JsonLine {
                question: &q.question,
                decision: outcome.decision,
                confidence: outcome.confidence,
                matches: outcome
                    .matches
                    .iter()
                    .map(|m| JsonMatch {
                        id: &m.id,
                        score: m.score,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", q.question)?;
            writeln!(
                out,
                "  decision: {:?} (confidence {:.3})",
                outcome.decision, outcome.confidence
            )?;
            for (rank, m) in outcome.matches.iter().enumerate() {
                writeln!(
                    out,
                    "  {}. {} [{:.3}] {}",
                    rank + 1,
                    m.id,
                    m.score,
                    m.question
                )?;
            }
            if let (Decision::Answer, Some(m)) = (outcome.decision, outcome.matches.first()) {
                if let Some(entry) = index.entry(&m.id) {
                    writeln!(out, "  answer: {}", entry.answer)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn eval(index: &Index, questions: &[Question], oos: Option<&[Question]>, verbose: bool) {
    let (mut top1, mut top5, mut answered, mut answered_right) = (0usize, 0usize, 0usize, 0usize);
    let (mut in_scope, mut null_handed_off, mut nulls) = (0usize, 0usize, 0usize);
    let mut latencies = Vec::with_capacity(questions.len());
    for q in questions {
        let start = Instant::now();
        let outcome = index.search(&q.question, 5);
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        let Some(expected) = &q.expected else {
            nulls += 1;
            null_handed_off += usize::from(outcome.decision == Decision::Handoff);
            continue;
        };
        in_scope += 1;
        let rank = outcome.matches.iter().position(|m| &m.id == expected);
        top1 += usize::from(rank == Some(0));
        top5 += usize::from(rank.is_some());
        if outcome.decision == Decision::Answer {
            answered += 1;
            answered_right += usize::from(rank == Some(0));
        }
        if verbose && rank != Some(0) {
            println!(
                "miss: {} | expected {} got {:?} ({:.3})",
                q.question,
                expected,
                outcome.matches.first().map(|m| &m.id),
                outcome.confidence
            );
        }
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    println!("questions           {in_scope}");
    println!("top-1 accuracy      {:.3}", share(top1, in_scope));
    println!("top-5 accuracy      {:.3}", share(top5, in_scope));
    println!("answered            {:.3}", share(answered, in_scope));
    println!("answer precision    {:.3}", share(answered_right, answered));
    println!("answered correctly  {:.3}", share(answered_right, in_scope));
    if nulls > 0 {
        println!("no-answer handed off {:.3}", share(null_handed_off, nulls));
    }
    if let Some(oos) = oos {
        let handed = oos
            .iter()
            .filter(|q| index.search(&q.question, 5).decision == Decision::Handoff)
            .count();
        println!(
            "oos handed off      {:.3} ({} questions)",
            share(handed, oos.len()),
            oos.len()
        );
    }
    latencies.sort_by(f64::total_cmp);
    if let Some(&max) = latencies.last() {
        let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "latency ms          p50 {:.3}  p99 {:.3}  max {max:.3}",
            p(0.5),
            p(0.99)
        );
    }
}
