//! Fetching one page politely: a per-endpoint rate limit, conditional requests, timeouts,
//! and retries with exponential backoff on 429, 5xx, timeouts and connection errors,
//! honouring `Retry-After` (seconds or an HTTP date).

use super::settings::{Endpoint, HttpSettings, ResolvedAuth};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, warn};

/// Validators of the last answer for a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    Ok {
        status: u16,
        body: Vec<u8>,
        validators: Validators,
        link: Option<String>,
        content_type: Option<String>,
    },
    NotModified,
}

/// Why a page could not be fetched (after the retries, or at once when retrying is no use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("{url}: {error} after {attempts} attempt(s)")]
    Transport {
        url: String,
        error: String,
        attempts: u32,
    },
    #[error("stopping")]
    Shutdown,
}

/// A simple pacer: at most `per_s` request starts per second.
pub struct RateLimit {
    interval: Option<Duration>,
    next: Instant,
}

impl RateLimit {
    pub fn new(per_s: f64) -> Self {
        RateLimit {
            interval: (per_s > 0.0).then(|| Duration::from_secs_f64(1.0 / per_s)),
            next: Instant::now(),
        }
    }
    pub async fn wait(&mut self) {
        let Some(iv) = self.interval else { return };
        let now = Instant::now();
        if self.next > now {
            tokio::time::sleep(self.next - now).await;
        }
        self.next = self.next.max(now) + iv;
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (IMF-fixdate, RFC 850 or asctime).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff for attempt `n` (1-based): initial x 2^(n-1), capped, with up to
/// 25% jitter so that several agents do not retry in step.
pub fn backoff(settings: &HttpSettings, attempt: u32) -> Duration {
    let base = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20))
        .min(settings.backoff_max_ms);
    let jitter = (base / 4).max(1);
    Duration::from_millis(base - jitter / 2 + rand::random::<u64>() % jitter)
}

pub struct Fetcher {
    client: reqwest::Client,
    headers: HeaderMap,
    auth: Option<ResolvedAuth>,
    limit: RateLimit,
    timeout: Duration,
}

pub fn build_client(settings: &HttpSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(&settings.user_agent)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .gzip(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Fetcher {
    pub fn new(
        client: reqwest::Client,
        settings: &HttpSettings,
        ep: &Endpoint,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in &ep.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
            headers.insert(name, value);
        }
        let auth = ep.auth.as_ref().map(|a| a.resolve()).transpose()?;
        Ok(Fetcher {
            client,
            headers,
            auth,
            limit: RateLimit::new(ep.rate_limit_per_s),
            timeout: Duration::from_millis(ep.timeout_ms.unwrap_or(settings.timeout_ms)),
        })
    }

    async fn once(
        &mut self,
        url: &Url,
        cond: Option<&Validators>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.limit.wait().await;
        let mut rb = self
            .client
            .get(url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout);
        if let Some(v) = cond {
            if let Some(e) = &v.etag {
                rb = rb.header(reqwest::header::IF_NONE_MATCH, e);
            }
            if let Some(m) = &v.last_modified {
                rb = rb.header(reqwest::header::IF_MODIFIED_SINCE, m);
            }
        }
        rb = match &self.auth {
            Some(ResolvedAuth::Bearer(t)) => rb.bearer_auth(t),
            Some(ResolvedAuth::Header(n, v)) => rb.header(n.clone(), v.clone()),
            Some(ResolvedAuth::Basic(u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        };
        rb.send().await
    }

    /// GETs `url`, retrying what can be retried. `sleep` waits for a delay and returns
    /// false when the agent is stopping.
    pub async fn get<S, F>(
        &mut self,
        settings: &HttpSettings,
        endpoint: &str,
        url: &Url,
        cond: Option<&Validators>,
        mut sleep: S,
    ) -> Result<Answer, FetchError>
    where
        S: FnMut(Duration) -> F,
        F: std::future::Future<Output = bool>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let t0 = Instant::now();
            let (retry_in, failure) = match self.once(url, cond).await {
                Ok(resp) => {
                    let status = resp.status();
                    metrics::counter!("ingest_http_requests_total", "endpoint" => endpoint.to_string(), "status" => status.as_u16().to_string()).increment(1);
                    if status == StatusCode::NOT_MODIFIED {
                        return Ok(Answer::NotModified);
                    }
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let hv = |h: HeaderName| {
                        resp.headers()
                            .get(h)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let validators = Validators {
                        etag: hv(reqwest::header::ETAG),
                        last_modified: hv(reqwest::header::LAST_MODIFIED),
                    };
                    let link = hv(reqwest::header::LINK);
                    let content_type = hv(reqwest::header::CONTENT_TYPE);
                    match resp.bytes().await {
                        Ok(body) if status.is_success() => {
                            metrics::histogram!("ingest_http_request_seconds", "endpoint" => endpoint.to_string()).record(t0.elapsed().as_secs_f64());
                            return Ok(Answer::Ok {
                                status: status.as_u16(),
                                body: body.to_vec(),
                                validators,
                                link,
                                content_type,
                            });
                        }
                        Ok(body) => {
                            let text =
                                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                            let err = FetchError::Status {
                                url: url.to_string(),
                                status: status.as_u16(),
                                attempts: attempt,
                                body: text,
                            };
                            if status == StatusCode::TOO_MANY_REQUESTS
                                || status.is_server_error()
                                || status == StatusCode::REQUEST_TIMEOUT
                            {
                                let d = match retry_after {
                                    Some(d) => {
                                        d.min(Duration::from_millis(settings.retry_after_max_ms))
                                    }
                                    None => backoff(settings, attempt),
                                };
                                (d, err)
                            } else {
                                // 4xx: asking again will not help.
                                return Err(err);
                            }
                        }
                        // The body broke off (or timed out) mid-way.
                        Err(e) => (
                            backoff(settings, attempt),
                            FetchError::Transport {
                                url: url.to_string(),
                                error: describe(&e),
                                attempts: attempt,
                            },
                        ),
                    }
                }
                Err(e) => {
                    metrics::counter!("ingest_http_requests_total", "endpoint" => endpoint.to_string(), "status" => if e.is_timeout() { "timeout" } else { "error" }).increment(1);
                    (
                        backoff(settings, attempt),
                        FetchError::Transport {
                            url: url.to_string(),
                            error: describe(&e),
                            attempts: attempt,
                        },
                    )
                }
            };
            if attempt >= settings.max_attempts {
                return Err(failure);
            }
            metrics::counter!("ingest_http_retries_total", "endpoint" => endpoint.to_string())
                .increment(1);
            warn!(endpoint, %url, attempt, retry_in_ms = retry_in.as_millis() as u64, error = %failure, "request failed; retrying");
            if !sleep(retry_in).await {
                return Err(FetchError::Shutdown);
            }
            debug!(endpoint, %url, attempt, "retrying");
        }
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        // RFC 850 and asctime forms.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:57 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:37 1994", now),
            Some(Duration::from_secs(60))
        );
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s: HttpSettings = serde_json::from_str("{}").unwrap();
        let d1 = backoff(&s, 1).as_millis();
        let d3 = backoff(&s, 3).as_millis();
        assert!((200..=300).contains(&d1), "{d1}");
        assert!((800..=1200).contains(&d3), "{d3}");
        assert!(backoff(&s, 40) <= Duration::from_millis(s.backoff_max_ms + s.backoff_max_ms / 4));
    }
}
