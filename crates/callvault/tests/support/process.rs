//! A process's CPU time and memory, read from /proc, for the figures tests print.

use std::fs;

/// Clock ticks per second of /proc's CPU times; 100 on every Linux port in use.
const TICKS_PER_SECOND: f64 = 100.0;

/// What a process has used so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Usage {
    /// User and system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident memory now, in KiB.
    pub(crate) resident_kib: u64,
}

impl Usage {
    /// Reads `pid`'s usage from /proc.
    pub(crate) fn of(pid: u32) -> Self {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The command name in parentheses may hold spaces: fields count after it.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let resident_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap();
        Self {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            resident_kib,
        }
    }
}
