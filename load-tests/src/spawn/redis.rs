//! The spawned `redis-server`: append-only file on, data under the run's dir, so that a
//! `redis-cli shutdown` and a start on the same port and dir bring back everything Redis
//! acknowledged (the issue's `redis-restart` fault; `appendonly yes` is what a scale-out setup
//! is told to run with).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{free_port, kill_now, log_file};

pub(super) struct Redis {
    pub port: u16,
    dir: PathBuf,
    run_dir: PathBuf,
    pub child: Option<Child>,
}

impl Redis {
    /// Starts redis-server on a free port with its data in `<run_dir>/redis`.
    pub async fn start(run_dir: &Path) -> anyhow::Result<Redis> {
        let dir = run_dir.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut r = Redis {
            port: free_port()?,
            dir,
            run_dir: run_dir.to_owned(),
            child: None,
        };
        r.respawn()?;
        r.wait_ready().await?;
        Ok(r)
    }

    /// Starts the process (again) with the same port and data dir.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("redis-server is already running");
        }
        let child = Command::new("redis-server")
            .args(args(self.port, &self.dir))
            .stdin(Stdio::null())
            .stdout(log_file(&self.run_dir, "redis.log")?)
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (install it, e.g. apt-get install redis-server)")?;
        self.child = Some(child);
        Ok(())
    }

    /// `redis-cli -p PORT shutdown`: Redis fsyncs its append-only file and exits. Waits at
    /// most 10 s for the exit, then kills it (and says so: that would lose data).
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        let child = self.child.take().context("redis-server is not running")?;
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown"])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running redis-cli (install redis-tools)")?;
        let mut child = child;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            kill_now(child).await;
            bail!(
                "redis-server did not exit within 10 s of `redis-cli shutdown` ({}); killed",
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(())
    }

    /// Waits until Redis answers PING (at most 10 s); a Redis loading its AOF answers
    /// `-LOADING`, which is not ready.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_redis(self.port).await
    }
}

/// The command line: AOF on with fsync every second (Redis's default policy, and what the
/// README tells a scale-out setup to run), no RDB snapshots, and no automatic AOF rewrite
/// below 2 GB: a rewrite forks Redis and its child writes the whole dataset out, which on a
/// machine shared with the nodes took a core away for 1-3 s at a time and was the sale day's
/// worst latency spikes. The README tells a sale-day Redis the same (rewrite off-peak with
/// `BGREWRITEAOF`); the AOF of a whole sale-day run stays far below that size.
pub fn args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--auto-aof-rewrite-min-size",
        "2gb",
        "--dir",
        &dir.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

async fn wait_redis(port: u16) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut buf = [0u8; 16];
            if s.write_all(b"PING\r\n").await.is_ok() {
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await
                {
                    if buf[..n].starts_with(b"+PONG") {
                        return Ok(());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("redis-server on port {port} did not answer PING within 10 s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_keeps_an_append_only_file_in_the_run_dir() {
        let a = args(6390, Path::new("/tmp/run/redis"));
        let pos = |k: &str| a.iter().position(|x| x == k).unwrap();
        assert_eq!(a[pos("--appendonly") + 1], "yes");
        assert_eq!(a[pos("--auto-aof-rewrite-min-size") + 1], "2gb");
        assert_eq!(a[pos("--dir") + 1], "/tmp/run/redis");
        assert_eq!(a[pos("--port") + 1], "6390");
    }
}
