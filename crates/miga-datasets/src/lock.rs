//! One writer per output folder: a lock file that a second process finds and stops at, naming
//! the holder, and that a killed holder's successor takes over.
//!
//! The lock is a file (`.miga-lock` or `.miga-lock-<part>`) created exclusively in the folder,
//! holding the holder's pid, host, start time and command. A process that finds one checks
//! whether its holder still runs: on Linux, by the boot id and the process start time recorded
//! with the pid (a pid reused by another process is not the holder); elsewhere the pid's
//! liveness is unknown and the lock is taken as held. A lock whose holder is gone is stale: it is
//! renamed away (only one of several processes finding it can rename it) and the lock is
//! created again, exclusively. Dropping the lock removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// When it took the lock, seconds since the Unix epoch.
    pub started: u64,
    /// The command it runs.
    pub command: String,
    /// Linux: the boot id and the process's start time (clock ticks after boot), which with
    /// the pid identify the process.
    pub process: Option<(String, u64)>,
}

impl Holder {
    fn this(command: &str) -> Self {
        Self {
            pid: std::process::id(),
            host: host(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            command: command.to_string(),
            process: process_identity(std::process::id()),
        }
    }

    /// Whether the holder still runs: `Some(false)` when it is known to be gone.
    fn alive(&self) -> Option<bool> {
        if self.host != host() {
            return None;
        }
        match (&self.process, process_identity(self.pid)) {
            (Some(recorded), Some(now)) => Some(*recorded == now),
            // No such process now (the pid's start time is readable where /proc is).
            (Some(_), None) => boot_id().map(|_| false),
            (None, _) => None,
        }
    }

    /// `pid 123 on host h since 2026-12-06 15:24:44 UTC (miga extract)`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on {} since {} ({})",
            self.pid,
            self.host,
            utc(self.started),
            self.command
        )
    }
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
    holder: Holder,
}

impl FolderLock {
    /// Takes the lock `name` (e.g. `.miga-lock`) of folder `dir` (created if needed) for
    /// `command`. A live holder is an error naming it; a stale lock is taken over.
    pub fn acquire(dir: &Path, name: &str, command: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(name);
        let holder = Holder::this(command);
        // Two rounds: the second after taking a stale lock away.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let text = serde_json::to_string(&holder).unwrap_or_default();
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| Error::io(&path, e))?;
                    return Ok(Self { path, holder });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let Ok(other) = serde_json::from_str::<Holder>(&text) else {
                // Being written by its holder this very moment, or damaged: not ours to take.
                return Err(Error::request(
                    dir,
                    format!(
                        "another miga process holds this folder ({} exists, unreadable); if \
                         none runs, delete it",
                        path.display()
                    ),
                ));
            };
            match other.alive() {
                Some(false) => {
                    // Stale: only one process can rename it away; the others find no file or
                    // the new holder's.
                    let aside = path.with_extension(format!("stale-{}", std::process::id()));
                    if std::fs::rename(&path, &aside).is_ok() {
                        let _ = std::fs::remove_file(&aside);
                    }
                }
                _ => {
                    return Err(Error::request(
                        dir,
                        format!(
                            "in use by {}: one process writes a folder at a time; wait for it, \
                             or, if it is gone (another host's process cannot be checked), \
                             delete {}",
                            other.describe(),
                            path.display()
                        ),
                    ));
                }
            }
        }
        Err(Error::request(
            dir,
            format!("{} was taken by another process meanwhile", path.display()),
        ))
    }

    /// Who holds it (this process).
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Takes folder `dir`'s lock for `what` (`.miga-lock`, or `.miga-lock-<part>` with a
    /// `part`), the holder's command being `what` and this process's command line.
    pub fn folder(dir: &Path, part: Option<&str>, what: &str) -> Result<Self> {
        let name = match part {
            Some(part) => format!(".miga-lock-{part}"),
            None => ".miga-lock".to_string(),
        };
        let mut line: String = std::env::args().collect::<Vec<_>>().join(" ");
        if line.len() > 200 {
            line = line.chars().take(200).collect::<String>() + "...";
        }
        FolderLock::acquire(dir, &name, &format!("{what}: {line}"))
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Only our own lock: a stale-lock takeover may have replaced it (it cannot while we
        // run, but a file put there by hand is not ours to delete).
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| serde_json::from_str::<Holder>(&text).ok())
            .is_some_and(|h| h == self.holder);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
}

/// Linux: the boot id and the start time of process `pid`, `None` when it does not exist (or
/// elsewhere).
fn process_identity(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?.parse().ok()?;
    Some((boot_id()?, start))
}

/// `2026-12-06 15:24:44 UTC`.
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (h, m, s) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scratch_dir;

    #[test]
    fn a_second_holder_is_refused_and_named_until_the_first_lets_go() {
        let dir = scratch_dir();
        let first = FolderLock::acquire(&dir, ".miga-lock", "miga extract").unwrap();
        let message = FolderLock::acquire(&dir, ".miga-lock", "miga extract")
            .unwrap_err()
            .to_string();
        let pid = std::process::id().to_string();
        assert!(
            message.contains(&format!("pid {pid}"))
                && message.contains("miga extract")
                && message.contains(" UTC"),
            "{message}"
        );
        // Another part of the same folder is another lock.
        let other_part = FolderLock::acquire(&dir, ".miga-lock-1of2", "miga extract").unwrap();
        drop(first);
        assert!(!dir.join(".miga-lock").exists());
        let again = FolderLock::acquire(&dir, ".miga-lock", "miga train").unwrap();
        assert_eq!(again.holder().command, "miga train");
        drop((again, other_part));
    }

    #[test]
    fn a_killed_holders_lock_is_taken_over() {
        let dir = scratch_dir();
        // A process that has exited: its pid (and start time) name no running process.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let identity = process_identity(pid);
        child.wait().unwrap();
        let stale = Holder {
            pid,
            command: "miga train (killed)".into(),
            process: identity.or_else(|| boot_id().map(|b| (b, 1))),
            ..Holder::this("")
        };
        std::fs::write(
            dir.join(".miga-lock"),
            serde_json::to_string(&stale).unwrap(),
        )
        .unwrap();
        if stale.process.is_none() {
            crate::skip_test("no /proc: the liveness of a pid is not known here");
            return;
        }
        let lock = FolderLock::acquire(&dir, ".miga-lock", "miga train").unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
        // A lock of another host cannot be checked: it is held.
        drop(lock);
        let remote = Holder {
            host: "elsewhere".into(),
            ..stale
        };
        std::fs::write(
            dir.join(".miga-lock"),
            serde_json::to_string(&remote).unwrap(),
        )
        .unwrap();
        let message = FolderLock::acquire(&dir, ".miga-lock", "miga train")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("on elsewhere") && message.contains("delete"),
            "{message}"
        );
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_570_684), "2026-12-06 15:24:44 UTC");
    }
}
