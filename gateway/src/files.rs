//! Files the node reads from disk (knowledge base, rosters, keys): where a relative path is
//! found, and a watch that tells when they changed so the bot and the roster reload the
//! same way. A leaf module: it knows nothing of what the files hold.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Number of files and the newest modification time under a path: enough to notice an
/// edit, a new file or a removed one without reading any of them.
pub type Fingerprint = (usize, Option<SystemTime>);

/// A relative path is tried from the working directory, then from the source tree, so the
/// bundled files (knowledge base, roster) are found wherever the binary runs from.
pub fn resolve_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let from_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    if from_source.exists() {
        from_source
    } else {
        path.to_path_buf()
    }
}

/// The fingerprint of a file, or of a directory's files (one level); `None` if unreadable.
/// Reads metadata: call it at start or on the blocking pool.
pub fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((1, meta.modified().ok()));
    }
    let mut count = 0;
    let mut newest = meta.modified().ok();
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        count += 1;
        let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
        newest = newest.max(modified);
    }
    Some((count, newest))
}

/// A file (or directory) watched for changes by polling its fingerprint.
pub struct Watched {
    path: PathBuf,
    seen: Mutex<Option<Fingerprint>>,
}

impl Watched {
    /// Starts watching `path` as it is now (reads its metadata: at start, blocking is fine).
    pub fn new(path: PathBuf) -> Self {
        let seen = Mutex::new(fingerprint(&path));
        Self { path, seen }
    }

    /// The fingerprint now, read on the blocking pool.
    pub async fn now(&self) -> Option<Fingerprint> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || fingerprint(&path))
            .await
            .ok()
            .flatten()
    }

    /// Whether `print` differs from the version last seen.
    pub fn differs(&self, print: &Option<Fingerprint>) -> bool {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != *print
    }

    /// Remembers `print` as seen: after a load, and after a refused one too, so a bad
    /// version is not retried on every tick.
    pub fn saw(&self, print: Option<Fingerprint>) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = print;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_edit_or_a_new_file_is_a_change_and_seeing_it_settles_it() {
        let dir = std::env::temp_dir().join(format!("kefu-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a.toml"), "x = 1").expect("write");
        let watched = Watched::new(dir.clone());
        assert!(!watched.differs(&watched.now().await));
        std::fs::write(dir.join("b.toml"), "y = 2").expect("write");
        let now = watched.now().await;
        assert!(watched.differs(&now), "a new file is a change");
        watched.saw(now);
        assert!(!watched.differs(&watched.now().await));
        std::fs::remove_dir_all(&dir).expect("clean up");
        let gone = watched.now().await;
        assert_eq!(gone, None);
        assert!(watched.differs(&gone), "a removed path is a change too");
    }
}
