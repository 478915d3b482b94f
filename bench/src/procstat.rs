//! CPU time, memory and threads of processes, read from /proc (Linux).

use std::collections::BTreeMap;
use std::fs;

/// Clock ticks per second of /proc's CPU times.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (comm, utime + stime in ticks) from a /proc/…/stat file.
fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is the state (field 3); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU seconds (user + system, all threads) a live process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).map(|(_, t)| t as f64 / ticks_per_second())
}

/// Peak resident set size (VmHWM) of a live process, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds of each thread of a live process: tid → (name, seconds).
pub fn threads(pid: u32) -> BTreeMap<u32, (String, f64)> {
    let mut out = BTreeMap::new();
    let tps = ticks_per_second();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(text) = fs::read_to_string(entry.path().join("stat")) {
            if let Some((comm, ticks)) = parse_stat(&text) {
                out.insert(tid, (comm, ticks as f64 / tps));
            }
        }
    }
    out
}

/// CPU seconds of this process's threads named `name`.
pub fn own_threads_named(name: &str) -> f64 {
    threads(std::process::id())
        .values()
        .filter(|(comm, _)| comm == name)
        .map(|(_, s)| s)
        .sum()
}

/// The machine: "N cores, MODEL, X GiB RAM".
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores (nproc), {model}, {:.1} GiB RAM",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

/// Processes (other than `exclude`) that used more than `min_share` of a core
/// over `window`: (pid, name, share). Used to warn about a busy machine.
pub fn busy_processes(
    window: std::time::Duration,
    min_share: f64,
    exclude: &[u32],
) -> Vec<(u32, String, f64)> {
    let scan = || -> BTreeMap<u32, (String, u64)> {
        let mut m = BTreeMap::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                    if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                        if let Some(v) = parse_stat(&text) {
                            m.insert(pid, v);
                        }
                    }
                }
            }
        }
        m
    };
    let before = scan();
    std::thread::sleep(window);
    let after = scan();
    let tps = ticks_per_second();
    let mut busy: Vec<(u32, String, f64)> = after
        .into_iter()
        .filter(|(pid, _)| !exclude.contains(pid))
        .filter_map(|(pid, (comm, t))| {
            let t0 = before.get(&pid).map(|b| b.1)?;
            let share = (t.saturating_sub(t0)) as f64 / tps / window.as_secs_f64();
            (share >= min_share).then_some((pid, comm, share))
        })
        .collect();
    busy.sort_by(|a, b| b.2.total_cmp(&a.2));
    busy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let line = "123 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(parse_stat(line), Some(("tokio runtime".into(), 300)));
    }

    #[test]
    fn reads_itself() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(peak_rss_bytes(me).unwrap() > 0);
        assert!(!threads(me).is_empty());
    }
}
