//! This process's resources, as the operator sees them: cores, resident
//! memory, and the memory limit it runs under (the cgroup's, else
//! `SCRIBE_MEMORY_LIMIT_MB`).

/// The cores this process may use, read once: the standard library reads
/// the cgroup's files at every ask, too slow for a per-dispatch question.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Resident memory in bytes, from `/proc/self/statm` (0 where unreadable).
pub fn resident_memory_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}

/// The memory limit in bytes: `SCRIBE_MEMORY_LIMIT_MB` when set, else the
/// cgroup v2 `memory.max` (none when it says `max` or cannot be read).
pub fn memory_limit_bytes(configured_mb: Option<u64>) -> Option<u64> {
    if let Some(mb) = configured_mb {
        return Some(mb.saturating_mul(1024 * 1024));
    }
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_readings_are_plausible() {
        assert!(resident_memory_bytes() > 1024 * 1024, "a test process holds more than 1 MiB");
        assert_eq!(memory_limit_bytes(Some(512)), Some(512 * 1024 * 1024));
    }
}
