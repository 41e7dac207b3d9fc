//! The decision logic of Scribe's two shipped policies, as plain Rust.
//!
//! It lives apart from the wasm glue so that exactly the same code runs in
//! the shipped components (`retry-backoff`, `priority-fair`) and in the
//! host's built-in fallback, which answers when the active policy plugin is
//! missing or broken. One copy means the fallback cannot drift from the
//! shipped behaviour.
//!
//! No dependencies, no I/O, no clock, no randomness of its own: every input
//! comes from the caller.

#![forbid(unsafe_code)]

/// How a provider call failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The provider asked to slow down, possibly saying for how long (ms).
    RateLimited {
        /// The provider's `Retry-After`, in milliseconds, when given.
        retry_after_ms: Option<u64>,
    },
    /// A failure that may go away by itself.
    Transient,
    /// The input was refused; retrying cannot help.
    InvalidInput,
    /// The credentials were refused; retrying cannot help.
    Unauthorized,
    /// Any other failure that waiting does not fix.
    Fatal,
}

/// What the retry policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this many milliseconds.
    RetryIn(u64),
    /// Stop retrying.
    GiveUp,
}

/// The settings of `retry-backoff`, read from its config entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// Attempts in all, the first one included (`max_attempts`).
    pub max_attempts: u32,
    /// The delay ceiling after the first failure, in ms (`base_ms`).
    pub base_ms: u64,
    /// The largest delay ceiling, in ms (`cap_ms`).
    pub cap_ms: u64,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self { max_attempts: 8, base_ms: 500, cap_ms: 30_000 }
    }
}

impl BackoffSettings {
    /// Reads `max_attempts`, `base_ms` and `cap_ms` from config entries.
    /// A missing or unparsable value keeps its default.
    pub fn from_config<K: AsRef<str>, V: AsRef<str>>(entries: &[(K, V)]) -> Self {
        let mut settings = Self::default();
        for (key, value) in entries {
            let value = value.as_ref().trim();
            match key.as_ref() {
                "max_attempts" => set_parsed(&mut settings.max_attempts, value),
                "base_ms" => set_parsed(&mut settings.base_ms, value),
                "cap_ms" => set_parsed(&mut settings.cap_ms, value),
                _ => {}
            }
        }
        settings
    }
}

fn set_parsed<T: std::str::FromStr>(slot: &mut T, value: &str) {
    if let Ok(parsed) = value.parse() {
        *slot = parsed;
    }
}

/// Exponential backoff with full jitter.
///
/// `attempt` counts the attempts made so far, the failed one included.
/// Gives up at once on errors that waiting cannot fix, and after
/// `max_attempts` attempts. Otherwise the delay is drawn uniformly from
/// `0..=min(cap, base * 2^(attempt-1))` using `random`; a provider's
/// retry-after wins when it is longer.
pub fn decide_backoff(
    settings: &BackoffSettings,
    attempt: u32,
    error: ErrorKind,
    random: u64,
) -> RetryDecision {
    let retry_after_ms = match error {
        ErrorKind::InvalidInput | ErrorKind::Unauthorized | ErrorKind::Fatal => {
            return RetryDecision::GiveUp
        }
        ErrorKind::RateLimited { retry_after_ms } => retry_after_ms,
        ErrorKind::Transient => None,
    };
    if attempt >= settings.max_attempts {
        return RetryDecision::GiveUp;
    }
    let ceiling = backoff_ceiling(settings, attempt);
    let jittered = random % (ceiling.saturating_add(1)).max(1);
    RetryDecision::RetryIn(jittered.max(retry_after_ms.unwrap_or(0)))
}

/// `min(cap, base * 2^(attempt-1))`, without overflow.
fn backoff_ceiling(settings: &BackoffSettings, attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(63);
    settings.base_ms.saturating_mul(1u64 << doublings).min(settings.cap_ms)
}

/// A job's priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Runs when nothing more urgent waits.
    Low,
    /// The default.
    Normal,
    /// Runs first.
    High,
}

/// One user's head-of-line job, with the figures `priority-fair` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The job's priority class.
    pub priority: Priority,
    /// When the job was submitted (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// How many of the user's jobs run now.
    pub user_running: u32,
    /// When the user's last job was dispatched; `None` if never.
    pub user_last_dispatch_ms: Option<u64>,
}

/// Orders candidates for `priority-fair`: higher class first; within a
/// class, the user with the fewest running jobs, then the user served least
/// recently (never served first), then the older job. The result holds each
/// index of `candidates` once.
pub fn rank_fair(candidates: &[Candidate]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
    order.sort_unstable_by_key(|&index| {
        let c = &candidates[index as usize];
        (
            std::cmp::Reverse(c.priority),
            c.user_running,
            c.user_last_dispatch_ms.map_or(0, |t| t.saturating_add(1)),
            c.submitted_at_ms,
            index,
        )
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_overrides_defaults_and_ignores_garbage() {
        let s = BackoffSettings::from_config(&[("max_attempts", "3"), ("base_ms", "x"), ("cap_ms", " 100 ")]);
        assert_eq!(s, BackoffSettings { max_attempts: 3, base_ms: 500, cap_ms: 100 });
    }

    #[test]
    fn jitter_stays_within_the_exponential_ceiling() {
        let s = BackoffSettings::default();
        for attempt in 1..8 {
            let ceiling = (500u64 << (attempt - 1)).min(30_000);
            assert_eq!(decide_backoff(&s, attempt, ErrorKind::Transient, u64::MAX), RetryDecision::RetryIn(u64::MAX % (ceiling + 1)));
            assert_eq!(decide_backoff(&s, attempt, ErrorKind::Transient, ceiling), RetryDecision::RetryIn(ceiling));
            assert_eq!(decide_backoff(&s, attempt, ErrorKind::Transient, ceiling + 1), RetryDecision::RetryIn(0));
        }
    }

    #[test]
    fn gives_up_after_max_attempts_and_on_final_kinds() {
        let s = BackoffSettings::default();
        assert_eq!(decide_backoff(&s, 8, ErrorKind::Transient, 1), RetryDecision::GiveUp);
        for kind in [ErrorKind::InvalidInput, ErrorKind::Unauthorized, ErrorKind::Fatal] {
            assert_eq!(decide_backoff(&s, 1, kind, 1), RetryDecision::GiveUp);
        }
    }

    #[test]
    fn longer_retry_after_wins() {
        let s = BackoffSettings::default();
        let limited = |ms| ErrorKind::RateLimited { retry_after_ms: Some(ms) };
        assert_eq!(decide_backoff(&s, 1, limited(90_000), 7), RetryDecision::RetryIn(90_000));
        assert_eq!(decide_backoff(&s, 1, limited(1), 400), RetryDecision::RetryIn(400));
    }

    #[test]
    fn fair_ranking_orders_class_then_running_then_recency() {
        let c = |priority, running, last: Option<u64>, at| Candidate {
            priority,
            submitted_at_ms: at,
            user_running: running,
            user_last_dispatch_ms: last,
        };
        let candidates = [
            c(Priority::Normal, 0, Some(50), 1),
            c(Priority::Low, 0, None, 0),
            c(Priority::Normal, 0, None, 9),
            c(Priority::High, 3, Some(99), 5),
            c(Priority::Normal, 1, None, 0),
            c(Priority::Normal, 0, Some(10), 2),
        ];
        assert_eq!(rank_fair(&candidates), vec![3, 2, 5, 0, 4, 1]);
    }
}
