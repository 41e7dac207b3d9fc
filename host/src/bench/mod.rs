//! `scribe bench`: figures measured on this machine, printed (medians,
//! p99s, ratios to a bound), never asserted; tests check correctness.
//!
//! `plugins` measures the plugin runtime alone; `local` the offline
//! provider's speed on the sample clips. `burst`, `throughput` and
//! the load scenarios (`ramp`, `sustained`, `recovery`)
//! run whole jobs through an in-process server and a fake OpenAI server in
//! the same process, so they exist only in builds with the `bench` feature
//! (no default build carries a fake); `store` (there too: it writes the
//! fakes' sample audio) measures the embedded store's writer alone.

#[cfg(feature = "bench")]
mod fleet;
#[cfg(feature = "bench")]
mod jobs;
#[cfg(feature = "bench")]
mod scenarios;
#[cfg(feature = "bench")]
mod store;
mod local;
mod plugins;

#[cfg(feature = "bench")]
pub use fleet::{FleetOptions, ScratchDatabase};
#[cfg(feature = "bench")]
pub use jobs::{run_burst, run_throughput, Burst, Throughput};
#[cfg(feature = "bench")]
pub use scenarios::{run_scenario, Scenario, ScenarioSettings};
#[cfg(feature = "bench")]
pub use store::{run_store, StoreBench};
pub use local::{run_local, LocalBench};
pub use plugins::{run_plugins, with_custom_section, PluginBench};

use std::time::Duration;

/// The benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A temporary directory or a file could not be used.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The plugin runtime did not start.
    #[error(transparent)]
    Start(#[from] crate::plugins::StartError),
    /// The directory watcher did not start.
    #[error("watching the plugin directory: {0}")]
    Watch(#[from] notify::Error),
    /// A plugin was refused.
    #[error(transparent)]
    Install(#[from] crate::plugins::InstallError),
    /// A plugin call failed.
    #[error(transparent)]
    Call(#[from] crate::plugins::PluginError),
    /// The in-process server did not start.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The audio store failed.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// An HTTP request to the in-process server failed.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The bench's scratch database could not be made.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The measurement itself went wrong.
    #[error("{0}")]
    Measure(String),
}

/// The CPU time (user and system, every thread) this process has used so
/// far, from `/proc/self/stat`; `None` where that is not there (not Linux).
/// Per job, it is what the work costs whether or not the two cores were
/// kept busy, and against 0.4 ms (5,000 jobs/s on 2 cores) it says how far
/// a goal in jobs/s is; it moves with the machine's speed as jobs/s do.
pub fn process_cpu() -> Option<Duration> {
    /// Linux reports these times in ticks of 1/100 s (USER_HZ) to userspace.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let mut after_name = stat.rsplit_once(')')?.1.split_whitespace();
    // utime and stime are fields 14 and 15; field 3 comes first here.
    let user: u64 = after_name.nth(11)?.parse().ok()?;
    let system: u64 = after_name.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1000 / TICKS_PER_SECOND))
}

/// Median and p99 of a set of durations.
pub struct Summary {
    /// The median.
    pub median: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

impl Summary {
    /// The summary of `samples` (zeros when there are none).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self { median: Duration::ZERO, p99: Duration::ZERO };
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self { median: at(0.5), p99: at(0.99) }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// This thread's time on a CPU so far, as the scheduler counts it (ns).
    fn thread_cpu() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat is there on Linux");
        Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
    }

    #[test]
    fn the_process_cpu_time_counts_a_threads_work() {
        let (before, thread_before, wall) = (super::process_cpu().expect("/proc/self/stat is there on Linux"), thread_cpu(), Instant::now());
        let mut x = 0u64;
        while thread_cpu() - thread_before < Duration::from_millis(300) {
            assert!(wall.elapsed() < Duration::from_secs(60), "the spinning thread got no CPU");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let (spun, used) = (thread_cpu() - thread_before, super::process_cpu().unwrap() - before);
        // Ticks of 10 ms on either side; other threads may add, not take.
        assert!(used + Duration::from_millis(20) >= spun, "the process used {used:?}, one of its threads {spun:?}");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        assert!(used <= wall.elapsed() * cores + Duration::from_millis(20), "{used:?} in {:?} on {cores} cores", wall.elapsed());
    }
}
