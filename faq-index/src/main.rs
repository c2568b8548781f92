//! `faq-index`: query and evaluate a knowledge base from the command line.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::run()
}
