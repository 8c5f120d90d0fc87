//! Host figures read from the kernel (Linux `/proc` and `statvfs`): CPU time, memory, load,
//! disk, and this process's own usage. Where a figure cannot be read, `None` — callers say so
//! rather than invent one.

use std::path::Path;

/// Cumulative CPU time of the whole host, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    /// Busy share between `earlier` and `self`, in percent.
    pub fn percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

pub fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
    /// The container's limit (cgroup v2 `memory.max`), when one is set.
    pub cgroup_limit_bytes: Option<u64>,
    pub cgroup_used_bytes: Option<u64>,
    pub cgroup_used_percent: Option<f64>,
}

pub fn memory() -> Option<Memory> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|l| *l < total);
    let used = limit.and_then(|_| {
        std::fs::read_to_string("/sys/fs/cgroup/memory.current")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    });
    Some(Memory {
        total_bytes: total,
        available_bytes: available,
        used_percent: (total - available.min(total)) as f64 * 100.0 / total as f64,
        cgroup_limit_bytes: limit,
        cgroup_used_bytes: used,
        cgroup_used_percent: limit.zip(used).map(|(l, u)| u as f64 * 100.0 / l as f64),
    })
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Load {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
    pub cores: usize,
}

pub fn load() -> Option<Load> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some(Load {
        one: f.next()??,
        five: f.next()??,
        fifteen: f.next()??,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    })
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Disk {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_percent: f64,
}

/// Space on the file system holding `path` (as `df` computes it).
pub fn disk(path: &Path) -> Option<Disk> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    let total = s.f_blocks as u64 * frsize;
    let free = s.f_bfree as u64 * frsize;
    let avail = s.f_bavail as u64 * frsize;
    let used = total.saturating_sub(free);
    let denom = used + avail;
    Some(Disk {
        total_bytes: total,
        available_bytes: avail,
        used_percent: if denom == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denom as f64
        },
    })
}

#[derive(Debug, Clone, Copy)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, so index 11.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("btime "))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        });
    Some(ProcessStats {
        cpu_seconds: (num(11)? + num(12)?) as f64 / ticks,
        start_time_seconds: boot + num(19)? as f64 / ticks,
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * page,
        open_fds,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_busy_share() {
        let a = parse_cpu_line("cpu  100 0 100 700 100 0 0 0 0 0").unwrap();
        // 1000 more ticks, 150 of them busy.
        let b = parse_cpu_line("cpu  200 0 150 1350 300 0 0 0 0 0").unwrap();
        assert_eq!(a.total, 1000);
        assert_eq!(a.busy, 200);
        assert_eq!(b.percent_since(&a), Some(15.0));
        assert!(parse_cpu_line("cpu0 1 2 3 4").is_none());
    }

    #[test]
    fn reads_this_host() {
        assert!(cpu_times().is_some());
        let m = memory().unwrap();
        assert!(m.total_bytes > 0 && (0.0..=100.0).contains(&m.used_percent));
        assert!(load().unwrap().cores >= 1);
        let d = disk(Path::new(".")).unwrap();
        assert!(d.total_bytes > 0);
        let p = process_stats().unwrap();
        assert!(p.resident_bytes > 0 && p.start_time_seconds > 1.0e9);
    }
}
