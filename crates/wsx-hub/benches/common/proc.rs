//! What the benches read about a process from `/proc`: its memory
//! (VmRSS, and its peak VmHWM) and its CPU time (utime + stime).

use super::Error;
use std::process::Command;

/// VmRSS of process `pid` ("self" for this one), in KiB.
pub fn rss_kib(pid: impl std::fmt::Display) -> Result<u64, Error> {
    status_kib(pid, "VmRSS:")
}

/// VmHWM of process `pid`: the most its RSS has been, in KiB.
pub fn peak_rss_kib(pid: impl std::fmt::Display) -> Result<u64, Error> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: impl std::fmt::Display, field: &str) -> Result<u64, Error> {
    let status = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&status).map_err(|e| format!("cannot read {status}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in {status}"))
}

/// (utime, stime) of process `pid` ("self" for this one; all its
/// threads), in clock ticks: user space and the kernel (on loopback, the
/// kernel's share includes the receiving side's TCP work, done in the
/// sender's `write`).
pub fn cpu_ticks(pid: impl std::fmt::Display) -> Result<(u64, u64), Error> {
    let path = format!("/proc/{pid}/stat");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let after = s.rsplit_once(')').map(|(_, a)| a).ok_or_else(|| format!("bad {path}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `after` starts at field 3.
    let n = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| format!("bad {path}"));
    Ok((n(14)?, n(15)?))
}

/// utime + stime of process `pid`, in clock ticks.
pub fn cpu_total(pid: impl std::fmt::Display) -> Result<u64, Error> {
    cpu_ticks(pid).map(|(u, s)| u + s)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
