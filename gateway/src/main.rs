//! `kefu-gateway`: parses the command line, loads settings and runs the gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::telemetry::{self, LogFormat};
use gateway::{Application, Settings};

/// mimalloc rather than the system allocator: a node allocates and frees many small frames,
/// often on another worker thread than the one that allocated them, where glibc's arenas
/// cost a fifth of the user time at a sale-day peak.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kefu-gateway",
    version,
    about = "kefu customer-service chat gateway"
)]
struct Cli {
    /// A TOML file layered over the embedded config/gateway.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration and print the effective settings, then exit.
    CheckConfig,
    /// Print the argon2 `token_hash` of an agent token, for the roster file.
    HashToken {
        /// The token; `AGENT_ID.SECRET` lets the gateway check it against one agent only.
        token: String,
    },
    /// Enroll an agent or operator for two-step sign-in: prints a new secret for the
    /// authenticator app, its otpauth:// URI, and the `totp = "…"` line for the roster entry
    /// (the secret sealed with the store key, which must be set as for starting the gateway).
    TotpEnroll {
        /// The roster entry's id (agent or operator).
        id: String,
    },
}

fn main() -> anyhow::Result<()> {
    gateway::allocator::tune();
    let cli = Cli::parse();
    if let Some(Command::HashToken { token }) = &cli.command {
        println!("{}", gateway::roster::hash_token(token)?);
        return Ok(());
    }
    let _logs = telemetry::init_logs(cli.log_format);
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut settings =
        Settings::load(cli.config.as_deref(), &env).context("invalid configuration")?;
    if let Some(listen) = cli.listen {
        settings.server.listen = listen;
    }
    match &cli.command {
        Some(Command::CheckConfig) => {
            gateway::signin::check_rosters(&settings).map_err(anyhow::Error::msg)?;
            println!("{settings:#?}");
            return Ok(());
        }
        Some(Command::TotpEnroll { id }) => {
            let keys = gateway::signin::RosterKeys::load(&settings.store);
            print!(
                "{}",
                gateway::signin::enroll(&keys, id).map_err(anyhow::Error::msg)?
            );
            return Ok(());
        }
        _ => {}
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.server.worker_threads > 0 {
        runtime.worker_threads(settings.server.worker_threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let app = Application::build(settings).await?;
        app.run_until_stopped(gateway::shutdown::os_signal())
            .await?;
        Ok(())
    })
}
