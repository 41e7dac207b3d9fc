//! `scribe bench ramp|sustained|recovery`: the brief's other load
//! scenarios, in scaled time against the fake OpenAI. Jobs arrive over the
//! run rather than at once, so the bound on the makespan also counts the
//! last arrival: max(N/R, N*L/C, last submit + L).
//!
//! - ramp: users join one by one over the first half; each then submits at
//!   a steady pace until the end;
//! - sustained: every user submits at a steady pace, together at 90 % of
//!   the rate limit;
//! - recovery: as sustained at 50 %, with every provider call failing
//!   (500) during the middle third; retries carry the jobs through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jobs::{busiest_second, print_user_spread, submit_on_schedule, Rig};
use super::{BenchError, Summary};
use crate::clock::now_ms;
use crate::store::{Job, JobStatus};

/// Which scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Users join one by one.
    Ramp,
    /// A steady stream near the limit.
    Sustained,
    /// A provider outage in the middle.
    Recovery,
}

/// Settings of a scenario run.
#[derive(Debug, Clone)]
pub struct ScenarioSettings {
    /// Which scenario.
    pub scenario: Scenario,
    /// Users (the ramp's final count).
    pub users: u32,
    /// Provider calls per minute.
    pub rate_per_minute: u32,
    /// Provider calls at once.
    pub concurrency: u32,
    /// The fake provider's latency.
    pub latency: Duration,
    /// How long submissions go on.
    pub duration: Duration,
}

/// When (offset from the start) each user submits each file.
fn schedule(settings: &ScenarioSettings) -> Vec<Vec<Duration>> {
    let rate_per_s = f64::from(settings.rate_per_minute) / 60.0;
    let total = settings.duration.as_secs_f64();
    let share = match settings.scenario {
        Scenario::Ramp | Scenario::Sustained => 0.9,
        Scenario::Recovery => 0.5,
    };
    let per_user_rate = rate_per_s * share / f64::from(settings.users);
    (0..settings.users)
        .map(|u| {
            let start = match settings.scenario {
                Scenario::Ramp => total / 2.0 * f64::from(u) / f64::from(settings.users),
                _ => 0.0,
            };
            let count = ((total - start) * per_user_rate).floor().max(1.0) as u32;
            (0..count).map(|i| Duration::from_secs_f64(start + f64::from(i) / per_user_rate)).collect()
        })
        .collect()
}

/// Runs a scenario and prints its figures.
pub async fn run_scenario(settings: &ScenarioSettings) -> Result<(), BenchError> {
    let limits = [
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", settings.rate_per_minute.to_string()),
        ("MAX_CONCURRENT_TRANSCRIPTIONS", settings.concurrency.to_string()),
    ];
    let rig = Arc::new(Rig::start(&limits, settings.latency, &super::FleetOptions::default()).await?);
    let plan = schedule(settings);
    let mut keys = Vec::new();
    for u in 0..settings.users {
        keys.push(rig.add_user(&format!("user-{u}")).await?);
    }
    let (start, start_ms) = (Instant::now(), now_ms());
    if settings.scenario == Scenario::Recovery {
        let rig = rig.clone();
        let third = settings.duration / 3;
        tokio::spawn(async move {
            tokio::time::sleep(third).await;
            rig.fake.set_fault_rates(1.0, 0.0, Duration::ZERO, 1);
            tokio::time::sleep(third).await;
            rig.fake.clear_faults();
        });
    }
    let ids = submit_on_schedule(&rig, keys, plan, start).await?;
    let last_submit = start.elapsed();
    let jobs = rig.ended_jobs(&ids, Duration::from_secs(3600)).await?;
    report(settings, &rig, &jobs, start_ms, last_submit);
    Ok(())
}

fn report(settings: &ScenarioSettings, rig: &Rig, jobs: &[Job], start_ms: i64, last_submit: Duration) {
    let n = jobs.len() as f64;
    let rate_per_s = f64::from(settings.rate_per_minute) / 60.0;
    let latency = settings.latency.as_secs_f64();
    let bound = (n / rate_per_s).max(n * latency / f64::from(settings.concurrency)).max(last_submit.as_secs_f64() + latency);
    let last_ms = jobs.iter().filter_map(|j| j.finished_at_ms).max().unwrap_or(start_ms);
    let makespan = (last_ms - start_ms) as f64 / 1e3;
    let waits: Vec<Duration> = jobs
        .iter()
        .filter_map(|j| j.finished_at_ms.map(|f| Duration::from_millis((f - j.created_at_ms).max(0) as u64)))
        .collect();
    let mut sorted = waits.clone();
    sorted.sort();
    let p95 = sorted.get(((sorted.len().max(1) - 1) as f64 * 0.95).round() as usize).copied().unwrap_or_default();
    let summary = Summary::of(waits);
    let failed = jobs.iter().filter(|j| j.status != JobStatus::Succeeded).count();
    let retried = jobs.iter().filter(|j| j.attempts > 1).count();
    println!(
        "{:?}: {} jobs from {} users over {:.0} s, {}/min, {} at a time, {} ms per call",
        settings.scenario,
        jobs.len(),
        settings.users,
        settings.duration.as_secs_f64(),
        settings.rate_per_minute,
        settings.concurrency,
        settings.latency.as_millis()
    );
    println!("makespan {makespan:.3} s, bound max(N/R, N*L/C, last submit + L) {bound:.3} s, makespan/bound {:.4}", makespan / bound);
    println!(
        "job latency p50 {:.2} s, p95 {:.2} s, p99 {:.2} s; {failed} failed, {retried} retried; provider: {} calls, most in any 1 s window {} (limit {:.0})",
        summary.median.as_secs_f64(),
        p95.as_secs_f64(),
        summary.p99.as_secs_f64(),
        rig.fake.calls(),
        busiest_second(&rig.fake.arrivals()),
        rate_per_s
    );
    print_user_spread(jobs, start_ms);
}
