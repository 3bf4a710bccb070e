//! Node processes: start detached, check, signal. Unix only (the testnet runs on loopback).

use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Environment variables that would override a node's config file; removed before starting.
const NODE_ENV: [&str; 6] = [
    "XINYI_DATA",
    "XINYI_HTTP",
    "XINYI_ORG",
    "XINYI_KEY",
    "XINYI_GENESIS",
    "XINYI_RATE_LIMIT",
];

/// Starts `node_bin start --config CONFIG` in its own process group (so a Ctrl-C at the
/// terminal that ran `up` does not reach it), stdout and stderr appended to `log`.
pub fn spawn_node(node_bin: &Path, config: &Path, log: &Path) -> Result<Child> {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new(node_bin);
    cmd.arg("start")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
    if let Some(d) = config.parent() {
        cmd.current_dir(d);
    }
    for v in NODE_ENV {
        cmd.env_remove(v);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", node_bin.display()))
}

/// State of a process as far as the testnet cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Running (or sleeping).
    Running,
    /// Stopped by SIGSTOP.
    Stopped,
    /// Gone, a zombie, or a different program now has the pid.
    Dead,
}

/// The state of `pid`, checking that it is still an `xinyi-node` (pids are reused).
pub fn state(pid: u32) -> ProcState {
    #[cfg(target_os = "linux")]
    {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return ProcState::Dead;
        };
        // pid (comm) S ...: the state follows the last ')'.
        let st = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_node = String::from_utf8_lossy(&cmdline).contains("xinyi-node");
        match st {
            _ if !is_node => ProcState::Dead,
            Some('Z') | Some('X') | None => ProcState::Dead,
            Some('T') | Some('t') => ProcState::Stopped,
            Some(_) => ProcState::Running,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if signal_raw(pid, 0).is_ok() {
            ProcState::Running
        } else {
            ProcState::Dead
        }
    }
}

/// Whether `pid` is a live (running or stopped) xinyi-node.
pub fn alive(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| state(p) != ProcState::Dead)
}

/// A signal `kill` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: graceful shutdown.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGSTOP: freeze.
    Stop,
    /// SIGCONT: resume.
    Cont,
}

impl Sig {
    /// Parses `9`, `KILL`, `SIGKILL`, `15`, `TERM`, `STOP`, `19`, `CONT`, `18` (any case).
    pub fn parse(s: &str) -> Result<Sig> {
        let u = s.trim().to_ascii_uppercase();
        let u = u.strip_prefix("SIG").unwrap_or(&u);
        Ok(match u {
            "9" | "KILL" => Sig::Kill,
            "15" | "TERM" => Sig::Term,
            "STOP" | "19" => Sig::Stop,
            "CONT" | "18" => Sig::Cont,
            _ => bail!("unknown signal {s:?}: use 9|KILL, 15|TERM, STOP or CONT"),
        })
    }

    fn raw(self) -> i32 {
        match self {
            Sig::Term => libc::SIGTERM,
            Sig::Kill => libc::SIGKILL,
            Sig::Stop => libc::SIGSTOP,
            Sig::Cont => libc::SIGCONT,
        }
    }

    /// `SIGTERM`, ...
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Kill => "SIGKILL",
            Sig::Stop => "SIGSTOP",
            Sig::Cont => "SIGCONT",
        }
    }
}

fn signal_raw(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    if pid <= 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refusing to signal pid <= 0",
        ));
    }
    // SAFETY: kill(2) with a positive pid only sends a signal; it touches no memory of ours.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `sig` to `pid` if it is still an xinyi-node.
pub fn signal(pid: u32, sig: Sig) -> Result<()> {
    if state(pid) == ProcState::Dead {
        bail!("process {pid} is not running");
    }
    signal_raw(pid, sig.raw()).with_context(|| format!("sending {} to {pid}", sig.name()))
}

/// The last non-empty line of a log file (for one-line errors).
pub fn last_log_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "(empty log)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(Sig::parse("9").unwrap(), Sig::Kill);
        assert_eq!(Sig::parse("sigkill").unwrap(), Sig::Kill);
        assert_eq!(Sig::parse("STOP").unwrap(), Sig::Stop);
        assert_eq!(Sig::parse("cont").unwrap(), Sig::Cont);
        assert_eq!(Sig::parse("TERM").unwrap(), Sig::Term);
        assert!(Sig::parse("HUP").is_err());
    }

    #[test]
    fn other_programs_are_not_nodes() {
        assert_eq!(state(std::process::id()), ProcState::Dead);
        assert_eq!(state(u32::MAX - 1), ProcState::Dead);
        assert!(signal(std::process::id(), Sig::Cont).is_err());
    }
}
