//! The plugin's settings turned into what one transcription needs.

/// The API's base URL when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com";

/// The `openai/whisper` version used when `version` is not set
/// (provider-apis.md §2.9; which one is current is unconfirmed, so
/// operators should pin theirs).
pub const DEFAULT_VERSION: &str = "8099696689d249cf8b122d833c36ac3f75505c666a395ca40ef26f68e7d3d16e";

/// Audio up to this size goes inline as a data URI; larger audio goes
/// through the files API (provider-apis.md §2.5: data URIs for 256 KB or
/// less).
pub const DATA_URI_MAX_BYTES: usize = 256 * 1024;

/// The files API's limit: under 100 MB.
pub const MAX_AUDIO_BYTES: u64 = 100_000_000;

/// Time between polls of a prediction that is not done (the clients'
/// 0.5 s, provider-apis.md §2.8).
pub const POLL_INTERVAL_MS: u64 = 500;

/// `{base_url}/v1/{path}`, whether `base_url` ends in `/`, `/v1` or neither.
pub fn endpoint(base_url: &str, path: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/{path}")
}

/// The time budget of one transcription, from the ms the host grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `Prefer: wait=N`: how long the create call may block, in seconds
    /// (1 to 60; spec regex `^wait(=([1-9]|[1-9][0-9]|60))?$`).
    pub prefer_wait_secs: u64,
    /// Stop polling and cancel the prediction once this much time is left,
    /// so the cancel is sent before the host's deadline.
    pub cancel_margin_ms: u64,
}

/// The budget for `deadline_ms`: keep a tenth (1 to 5 s) for cancelling,
/// and block on create for at most what is left, capped at 60 s.
pub fn budget(deadline_ms: u64) -> Budget {
    let cancel_margin_ms = (deadline_ms / 10).clamp(1000, 5000).min(deadline_ms);
    let usable_secs = deadline_ms.saturating_sub(cancel_margin_ms) / 1000;
    Budget { prefer_wait_secs: usable_secs.clamp(1, 60), cancel_margin_ms }
}

/// `Prefer: wait=N` for `budget` and the `wait_secs` setting (1 to 60;
/// blank or unreadable: the budget's).
pub fn prefer_wait_secs(budget: &Budget, setting: Option<&str>) -> u64 {
    let configured = setting.and_then(|s| s.trim().parse::<u64>().ok()).map(|n| n.clamp(1, 60));
    configured.map_or(budget.prefer_wait_secs, |n| n.min(budget.prefer_wait_secs))
}

/// The `language` input: Whisper's code, or `auto` when the job names none.
pub fn language_input(language: Option<&str>) -> String {
    match language.map(str::trim).filter(|l| !l.is_empty()) {
        Some(code) => code.to_ascii_lowercase(),
        None => "auto".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_every_shape_of_base_url() {
        for base in ["https://api.replicate.com", "https://api.replicate.com/", "https://api.replicate.com/v1", "https://api.replicate.com/v1/"] {
            assert_eq!(endpoint(base, "predictions"), "https://api.replicate.com/v1/predictions", "{base:?}");
        }
        assert_eq!(endpoint("http://127.0.0.1:9000", "files"), "http://127.0.0.1:9000/v1/files");
    }

    #[test]
    fn the_budget_leaves_room_to_cancel_and_caps_the_wait() {
        assert_eq!(budget(300_000), Budget { prefer_wait_secs: 60, cancel_margin_ms: 5000 });
        assert_eq!(budget(20_000), Budget { prefer_wait_secs: 18, cancel_margin_ms: 2000 });
        assert_eq!(budget(3_000), Budget { prefer_wait_secs: 2, cancel_margin_ms: 1000 });
        assert_eq!(budget(500), Budget { prefer_wait_secs: 1, cancel_margin_ms: 500 });
    }

    #[test]
    fn the_wait_setting_shortens_the_wait_within_the_budget() {
        let b = budget(300_000);
        assert_eq!(prefer_wait_secs(&b, None), 60);
        assert_eq!(prefer_wait_secs(&b, Some("5")), 5);
        assert_eq!(prefer_wait_secs(&b, Some("0")), 1);
        assert_eq!(prefer_wait_secs(&b, Some("x")), 60);
        assert_eq!(prefer_wait_secs(&budget(3_000), Some("30")), 2);
    }

    #[test]
    fn language_is_a_code_or_auto() {
        assert_eq!(language_input(Some("EN")), "en");
        assert_eq!(language_input(Some(" ")), "auto");
        assert_eq!(language_input(None), "auto");
    }
}
