//! Fetching a submit's `audio_url`: the host downloads the audio on the
//! client's behalf, so the download must not become a way into the host's
//! own network.
//!
//! Every address the fetch may connect to is checked, not just the URL's
//! text: names are resolved by a resolver that refuses loopback, private,
//! link-local and other non-public addresses (so a name that points inside,
//! or is re-pointed there, is refused at connect time), IP literals are
//! checked before the request and on every redirect, and proxies from the
//! environment are ignored (a proxy would connect for us, unchecked). The
//! operator can allow internal addresses (`SCRIBE_AUDIO_URL_ALLOW_PRIVATE`),
//! e.g. for audio on a LAN file server. The body streams into the audio
//! store under the same size limit as an upload, and the whole fetch has a
//! deadline (`SCRIBE_AUDIO_URL_TIMEOUT_MS`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// The most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Why an `audio_url` cannot be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an absolute http(s) URL with a host.
    #[error("not an http:// or https:// URL with a host: {0}")]
    InvalidUrl(String),
    /// The URL (or a redirect, or what its name resolves to) is an address
    /// the operator has not allowed.
    #[error("{0} is a loopback, private, link-local or otherwise internal address, which this server does not fetch from (the operator can allow it with SCRIBE_AUDIO_URL_ALLOW_PRIVATE)")]
    Forbidden(String),
    /// The server answered, but not with the audio.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The server announced a body over the limit.
    #[error("the server announced {announced} bytes, over the {limit}-byte limit (SCRIBE_MAX_UPLOAD_BYTES)")]
    TooLarge {
        /// The `Content-Length` it sent.
        announced: u64,
        /// The limit.
        limit: u64,
    },
    /// The fetch did not finish within the deadline.
    #[error("the download did not finish within {0} ms (SCRIBE_AUDIO_URL_TIMEOUT_MS)")]
    Timeout(u64),
    /// Connecting or reading failed.
    #[error("the download failed: {0}")]
    Failed(String),
}

/// Downloads audio from the URLs submits name, within the operator's rules.
#[derive(Clone)]
pub struct UrlFetcher {
    client: reqwest::Client,
    allow_private: bool,
    timeout_ms: u64,
}

impl UrlFetcher {
    /// A fetcher; `allow_private` lets it reach internal addresses.
    pub fn new(allow_private: bool, timeout_ms: u64) -> Self {
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(FetchError::Failed(format!("more than {MAX_REDIRECTS} redirects")));
            }
            match check_literal(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect)
            .dns_resolver(Arc::new(CheckedResolver { allow_private }))
            .timeout(Duration::from_millis(timeout_ms))
            .connect_timeout(Duration::from_millis(timeout_ms))
            .user_agent(concat!("scribe/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls and no native roots to load builds");
        Self { client, allow_private, timeout_ms }
    }

    /// Starts the download of `url` and returns its body as a stream (each
    /// chunk read as the store asks for it). Refused addresses, non-2xx
    /// answers and an announced length over `limit` fail here.
    pub async fn open(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, std::io::Error>>, FetchError> {
        let parsed = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(FetchError::InvalidUrl(format!("{:?}", truncate(url))));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FetchError::InvalidUrl("credentials in the URL are not sent".into()));
        }
        check_literal(&parsed, self.allow_private)?;
        let response = self.client.get(parsed).send().await.map_err(|e| self.classify(e))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if let Some(announced) = response.content_length().filter(|n| *n > limit) {
            return Err(FetchError::TooLarge { announced, limit });
        }
        let timeout_ms = self.timeout_ms;
        Ok(response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(|e| std::io::Error::other(describe(&e, timeout_ms))))
            .boxed())
    }

    fn classify(&self, error: reqwest::Error) -> FetchError {
        if let Some(found) = find_source::<FetchError>(&error) {
            return match found {
                FetchError::Forbidden(what) => FetchError::Forbidden(what.clone()),
                other => FetchError::Failed(other.to_string()),
            };
        }
        if error.is_timeout() {
            return FetchError::Timeout(self.timeout_ms);
        }
        FetchError::Failed(describe(&error, self.timeout_ms))
    }
}

/// The error chain of a reqwest error, joined (its `Display` alone says
/// only "error sending request").
fn describe(error: &reqwest::Error, timeout_ms: u64) -> String {
    if error.is_timeout() {
        return FetchError::Timeout(timeout_ms).to_string();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Finds a `T` in `error`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Refuses a URL whose host is an IP literal the rules forbid (names are
/// checked by [`CheckedResolver`] when they are resolved).
fn check_literal(url: &Url, allow_private: bool) -> Result<(), FetchError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(FetchError::Forbidden(ip.to_string()))
    }
}

/// Resolves names with the system resolver and refuses the lookup if any
/// address it yields is internal (an attacker's name could list one public
/// and one internal address).
struct CheckedResolver {
    allow_private: bool,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    let what = format!("{host} ({})", bad.ip());
                    return Err(Box::new(FetchError::Forbidden(what)) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address (not loopback, private,
/// link-local, shared, unspecified, broadcast, multicast, documentation or
/// unique-local; IPv4-mapped IPv6 judged as its IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let reserved = a >= 240 || a == 0;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    // NAT64 and 6to4 embed IPv4 addresses that could be internal.
    let translated = first == 0x0064 || first == 0x2002;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation
        || translated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal} must count as internal");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public} must count as public");
        }
    }

    #[test]
    fn literal_urls_are_checked_unless_allowed() {
        let url = Url::parse("http://127.0.0.1:9/a.wav").unwrap();
        assert!(matches!(check_literal(&url, false), Err(FetchError::Forbidden(_))));
        assert!(check_literal(&url, true).is_ok());
        let url = Url::parse("http://[::1]/a.wav").unwrap();
        assert!(matches!(check_literal(&url, false), Err(FetchError::Forbidden(_))));
        let url = Url::parse("https://example.com/a.wav").unwrap();
        assert!(check_literal(&url, false).is_ok());
    }
}
