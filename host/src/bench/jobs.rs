//! `scribe bench burst` and `scribe bench throughput`: whole jobs, from an
//! HTTP submit to a stored transcript, through an in-process server, the
//! real scheduler and `openai-whisper` plugin, and a fake OpenAI server.
//!
//! `burst` is the brief's scenario in scaled time (10 users x 100 distinct
//! files at once, 1800 calls/minute, 5 at a time, 50 ms per call): what
//! matters is how close the makespan comes to its bound max(N/R, N*L/C)
//! and whether the provider ever saw the limits broken. `throughput` turns
//! the limits off and gives the provider no latency, so what is left is
//! Scribe's own cost per job.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scribe_fakes::openai::FakeOpenAi;

use super::fleet::{FleetOptions, ScratchDatabase};
use super::{BenchError, Summary};
use crate::clock::now_ms;
use crate::config::Config;
use crate::server::{self, Running};
use crate::store::{Job, JobStatus};

/// Settings of `scribe bench burst`.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Users submitting at once.
    pub users: u32,
    /// Distinct files each user submits.
    pub jobs_per_user: u32,
    /// Provider calls per minute (`TRANSCRIPTION_RATE_LIMIT_PER_MINUTE`).
    pub rate_per_minute: u32,
    /// Provider calls at once (`MAX_CONCURRENT_TRANSCRIPTIONS`).
    pub concurrency: u32,
    /// The fake provider's latency per call.
    pub latency: Duration,
    /// One instance, or a fleet on PostgreSQL.
    pub fleet: FleetOptions,
}

/// Settings of `scribe bench throughput`.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Jobs submitted.
    pub jobs: u32,
    /// Clients submitting at once.
    pub clients: u32,
    /// Provider calls at once.
    pub concurrency: u32,
    /// One instance, or a fleet on PostgreSQL.
    pub fleet: FleetOptions,
}

const API_KEY: &str = "sk-bench";

/// Servers on temporary data directories (one, or a fleet on a scratch
/// PostgreSQL database), talking to a fake OpenAI; submits go round the
/// instances in turn.
pub(super) struct Rig {
    /// The first instance (its store is the fleet's).
    pub(super) server: Running,
    others: Vec<Running>,
    pub(super) fake: FakeOpenAi,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    client: reqwest::Client,
    _dirs: Vec<tempfile::TempDir>,
    _database: Option<ScratchDatabase>,
}

impl Rig {
    pub(super) async fn start(limits: &[(&str, String)], latency: Duration, fleet: &FleetOptions) -> Result<Self, BenchError> {
        fleet.check()?;
        let fake = FakeOpenAi::start(API_KEY).await;
        fake.set_latency(latency);
        let database = match &fleet.postgres {
            Some(admin) => Some(ScratchDatabase::create(admin).await?),
            None => None,
        };
        let (mut servers, mut dirs) = (Vec::new(), Vec::new());
        for _ in 0..fleet.instances {
            let dir = tempfile::tempdir()?;
            let mut vars: HashMap<String, String> = limits.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            vars.insert("SCRIBE_DATA_DIR".into(), dir.path().display().to_string());
            vars.insert("OPENAI_API_KEY".into(), API_KEY.into());
            vars.insert("OPENAI_BASE_URL".into(), fake.base_url());
            vars.insert("SCRIBE_MAX_QUEUE_LENGTH".into(), "1000000".into());
            if let Some(database) = &database {
                vars.insert("DATABASE_URL".into(), database.url.clone());
            }
            let config = Config::from_vars(vars)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            servers.push(server::start_on(config, listener).await?);
            dirs.push(dir);
        }
        let bases = servers.iter().map(|s| format!("http://{}", s.addr)).collect();
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let server = servers.remove(0);
        let next = std::sync::atomic::AtomicUsize::new(0);
        Ok(Self { server, others: servers, fake, bases, next, client, _dirs: dirs, _database: database })
    }

    /// Where the run is: "1 instance on SQLite", "3 instances on PostgreSQL".
    fn where_(&self) -> String {
        let n = self.instances();
        let db = if self._database.is_some() { "PostgreSQL" } else { "SQLite" };
        format!("{n} instance{} on {db}", if n == 1 { "" } else { "s" })
    }

    /// How many instances serve.
    pub(super) fn instances(&self) -> usize {
        1 + self.others.len()
    }

    pub(super) async fn add_user(&self, name: &str) -> Result<String, BenchError> {
        Ok(crate::users::add(&*self.server.store, name, now_ms()).await?.1)
    }

    /// Submits one file; the job id and how long the submit took.
    pub(super) async fn submit(&self, key: &str, audio: Vec<u8>) -> Result<(String, Duration), BenchError> {
        let start = Instant::now();
        let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(audio).file_name("a.wav"));
        let base = &self.bases[self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.bases.len()];
        let response = self.client.post(format!("{base}/v1/jobs")).bearer_auth(key).multipart(form).send().await?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            let status = response.status();
            return Err(BenchError::Measure(format!("a submit answered {status}: {}", response.text().await?)));
        }
        let job: serde_json::Value = response.json().await?;
        let id = job["id"].as_str().ok_or_else(|| BenchError::Measure("a job without an id".into()))?;
        Ok((id.to_string(), start.elapsed()))
    }

    /// Waits until no job is queued or running; every job, all succeeded.
    pub(super) async fn finished_jobs(&self, ids: &[String], timeout: Duration) -> Result<Vec<Job>, BenchError> {
        let jobs = self.ended_jobs(ids, timeout).await?;
        if let Some(bad) = jobs.iter().find(|j| j.status != JobStatus::Succeeded) {
            return Err(BenchError::Measure(format!("job {} ended {:?}: {:?}", bad.id, bad.status, bad.error)));
        }
        Ok(jobs)
    }

    /// Waits until no job is queued or running, then reads every job.
    pub(super) async fn ended_jobs(&self, ids: &[String], timeout: Duration) -> Result<Vec<Job>, BenchError> {
        self.drained(timeout).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            let job = self.server.store.job_by_id(id).await?;
            jobs.push(job.ok_or_else(|| BenchError::Measure(format!("job {id} vanished")))?);
        }
        Ok(jobs)
    }

    /// Waits until no job is queued or running.
    pub(super) async fn drained(&self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        while self.server.store.queue_length().await? > 0 {
            if Instant::now() > deadline {
                return Err(BenchError::Measure(format!("jobs still queued after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Runs the burst scenario and prints its figures.
pub async fn run_burst(settings: &Burst) -> Result<(), BenchError> {
    let limits = [
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", settings.rate_per_minute.to_string()),
        ("MAX_CONCURRENT_TRANSCRIPTIONS", settings.concurrency.to_string()),
    ];
    let rig = Arc::new(Rig::start(&limits, settings.latency, &settings.fleet).await?);
    let mut keys = Vec::new();
    for u in 0..settings.users {
        keys.push(rig.add_user(&format!("user-{u}")).await?);
    }
    let start_ms = now_ms();
    let start = Instant::now();
    // Everyone's files at once: each user submits them back to back.
    let plan = vec![vec![Duration::ZERO; settings.jobs_per_user as usize]; settings.users as usize];
    let ids = submit_on_schedule(&rig, keys, plan, start).await?;
    let submitted_in = start.elapsed();
    let jobs = rig.finished_jobs(&ids, Duration::from_secs(3600)).await?;

    let n = jobs.len() as f64;
    let rate_per_s = f64::from(settings.rate_per_minute) / 60.0;
    let bound = (n / rate_per_s).max(n * settings.latency.as_secs_f64() / f64::from(settings.concurrency));
    let last_ms = jobs.iter().filter_map(|j| j.finished_at_ms).max().unwrap_or(start_ms);
    let makespan = (last_ms - start_ms) as f64 / 1e3;
    println!(
        "burst on {}: {} users x {} files, {}/min, {} at a time, {} ms per call (all submitted in {:.2} s)",
        rig.where_(),
        settings.users,
        settings.jobs_per_user,
        settings.rate_per_minute,
        settings.concurrency,
        settings.latency.as_millis(),
        submitted_in.as_secs_f64()
    );
    println!("makespan {makespan:.3} s, bound max(N/R, N*L/C) {bound:.3} s, makespan/bound {:.4}", makespan / bound);
    println!(
        "provider: {} calls, most in any 1 s window {} (limit {:.0}), peak in flight {} (limit {})",
        rig.fake.calls(),
        busiest_second(&rig.fake.arrivals()),
        rate_per_s,
        rig.fake.max_in_flight(),
        settings.concurrency
    );
    print_user_spread(&jobs, start_ms);
    Ok(())
}

/// Submits, for each user (`keys[u]`), one distinct file at each offset of
/// `plan[u]` from `start` (users in parallel, each user's in order); the
/// job ids.
pub(super) async fn submit_on_schedule(
    rig: &Arc<Rig>,
    keys: Vec<String>,
    plan: Vec<Vec<Duration>>,
    start: Instant,
) -> Result<Vec<String>, BenchError> {
    let mut submitters = Vec::new();
    for (u, (key, times)) in keys.into_iter().zip(plan).enumerate() {
        let rig = rig.clone();
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(times.len());
            for (j, at) in times.into_iter().enumerate() {
                tokio::time::sleep_until((start + at).into()).await;
                ids.push(rig.submit(&key, scribe_fakes::wav(u as u32 * 100_000 + j as u32, 400)).await?.0);
            }
            Ok::<_, BenchError>(ids)
        }));
    }
    let mut ids = Vec::new();
    for submitter in submitters {
        ids.extend(submitter.await.map_err(|e| BenchError::Measure(e.to_string()))??);
    }
    Ok(ids)
}

/// The most arrivals within any window of one second.
pub(super) fn busiest_second(arrivals: &[Instant]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while at.duration_since(sorted[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Per user: when their first and last job finished; then the spread of
/// the first and of the last completions across users.
pub(super) fn print_user_spread(jobs: &[Job], start_ms: i64) {
    let mut per_user: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for job in jobs {
        let done = job.finished_at_ms.unwrap_or(start_ms) - start_ms;
        let entry = per_user.entry(job.user_id.as_str()).or_insert((done, done));
        entry.0 = entry.0.min(done);
        entry.1 = entry.1.max(done);
    }
    let firsts: Vec<i64> = per_user.values().map(|v| v.0).collect();
    let lasts: Vec<i64> = per_user.values().map(|v| v.1).collect();
    let span = |v: &[i64]| (v.iter().min().copied().unwrap_or(0), v.iter().max().copied().unwrap_or(0));
    let (first_min, first_max) = span(&firsts);
    let (last_min, last_max) = span(&lasts);
    println!(
        "per user: first job done between {:.2} s and {:.2} s (spread {:.2} s); last job done between {:.2} s and {:.2} s (spread {:.2} s)",
        first_min as f64 / 1e3,
        first_max as f64 / 1e3,
        (first_max - first_min) as f64 / 1e3,
        last_min as f64 / 1e3,
        last_max as f64 / 1e3,
        (last_max - last_min) as f64 / 1e3
    );
}

/// Runs the throughput scenario and prints its figures.
pub async fn run_throughput(settings: &Throughput) -> Result<(), BenchError> {
    let limits = [
        ("TRANSCRIPTION_RATE_LIMIT_PER_MINUTE", "100000000".to_string()),
        ("TRANSCRIPTION_RATE_LIMIT_BURST", "100000".to_string()),
        ("MAX_CONCURRENT_TRANSCRIPTIONS", settings.concurrency.to_string()),
    ];
    let rig = Arc::new(Rig::start(&limits, Duration::ZERO, &settings.fleet).await?);
    let key = Arc::new(rig.add_user("bench").await?);
    let start_ms = now_ms();
    let start = Instant::now();
    let cpu_before = super::process_cpu();
    let mut clients = Vec::new();
    for c in 0..settings.clients {
        let (rig, key) = (rig.clone(), key.clone());
        let share: Vec<u32> = (0..settings.jobs).filter(|j| j % settings.clients == c).collect();
        clients.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(share.len());
            for j in share {
                out.push(rig.submit(&key, scribe_fakes::wav(j, 400)).await?);
            }
            Ok::<_, BenchError>(out)
        }));
    }
    let (mut ids, mut latencies) = (Vec::new(), Vec::new());
    for client in clients {
        for (id, latency) in client.await.map_err(|e| BenchError::Measure(e.to_string()))?? {
            ids.push(id);
            latencies.push(latency);
        }
    }
    let submitted_in = start.elapsed();
    // Sampled before the jobs are read back, which is the bench's work.
    rig.drained(Duration::from_secs(3600)).await?;
    let cpu = cpu_before.zip(super::process_cpu()).map(|(before, after)| after.saturating_sub(before));
    let jobs = rig.finished_jobs(&ids, Duration::from_secs(3600)).await?;
    let last_ms = jobs.iter().filter_map(|j| j.finished_at_ms).max().unwrap_or(start_ms);
    let elapsed = ((last_ms - start_ms) as f64 / 1e3).max(1e-3);
    let submit = Summary::of(latencies);
    println!(
        "throughput on {}: {} jobs from {} clients, limits off, provider latency 0, {} calls at a time",
        rig.where_(),
        settings.jobs, settings.clients, settings.concurrency
    );
    println!(
        "end to end {:.0} jobs/s ({:.2} s); submits alone {:.0} jobs/s; submit latency p50 {:.2} ms, p99 {:.2} ms",
        f64::from(settings.jobs) / elapsed,
        elapsed,
        f64::from(settings.jobs) / submitted_in.as_secs_f64(),
        submit.median.as_secs_f64() * 1e3,
        submit.p99.as_secs_f64() * 1e3
    );
    if let Some(cpu) = cpu {
        println!(
            "cpu {:.2} s user+system, {:.3} ms per job (the whole process: server, bench clients and fake provider)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e3 / f64::from(settings.jobs)
        );
    }
    Ok(())
}
