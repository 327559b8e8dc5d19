//! Storage-path normalization: every form a worker reports an output in becomes one
//! [`StoragePath`] — a known bucket and a key under the job owner's folder — or a
//! [`PathRejection`] saying why not.
//!
//! Pure: no I/O, no clock. The accepted forms (U is the job's user id):
//!
//! | form | example |
//! |---|---|
//! | bucket-relative key | `U/sdxl_J_1_1.png` |
//! | bucket-prefixed key (first segment a known bucket) | `workspace-temp/U/J/0.png` |
//! | bare file name, placed in the owner's folder | `a.png` |
//! | storage object path | `/storage/v1/object/{public,sign,authenticated}/<bucket>/U/a.png` |
//! | full URL on the configured storage host | `https://proj.supabase.co/storage/v1/object/...` |
//!
//! Query strings and fragments are dropped, duplicate slashes collapse, and each segment is
//! percent-decoded exactly once. Refused: `.`/`..` segments (raw or encoded), backslashes,
//! control characters (raw or encoded), encoded slashes, leftover `%` after decoding
//! (double encoding), foreign hosts, non-HTTP schemes, unknown buckets, and keys outside the
//! owner's folder. The URL parser of the `url` crate is deliberately not used on reported
//! paths: it resolves `..` and `%2e%2e` silently, which would hide the very traversal this
//! module must refuse.

use std::fmt;

use gpuq_schemas::UserId;
use percent_encoding::percent_decode_str;

#[cfg(test)]
mod tests;

/// Longest reported path or URL looked at, bytes.
const MAX_INPUT_BYTES: usize = 2048;
/// Longest key accepted, bytes (the S3 object-key limit).
const MAX_KEY_BYTES: usize = 1024;
/// Access segments of `/storage/v1/object/<access>/<bucket>/...`.
const ACCESS_SEGMENTS: [&str; 3] = ["public", "sign", "authenticated"];

/// A normalized output location: a known bucket and a key that starts with the owner's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoragePath {
    bucket: String,
    key: String,
}

impl StoragePath {
    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key, `"<user id>/..."`, decoded (as the storage API names the object).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// Why a reported path was refused. Messages are safe to return to the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    /// Nothing but slashes or a query.
    #[error("path is empty")]
    Empty,
    /// Longer than the limits.
    #[error("path is too long")]
    TooLong,
    /// A `..` or `.` segment, raw or percent-encoded, or an encoded `/`.
    #[error("path traversal (`..`, `.` or an encoded `/` segment)")]
    Traversal,
    /// A backslash, raw or encoded.
    #[error("backslash in path (path traversal)")]
    Backslash,
    /// A control character, raw or encoded.
    #[error("control character in path (path traversal)")]
    ControlCharacter,
    /// Invalid UTF-8 after decoding, or a `%` left after decoding once.
    #[error("invalid or double percent-encoding")]
    InvalidEncoding,
    /// A URL whose scheme is not http or https.
    #[error("unsupported URL scheme {0:?}")]
    UnsupportedScheme(String),
    /// A URL on another host than the configured storage host.
    #[error("foreign host {0:?}: only the configured storage host is accepted")]
    ForeignHost(String),
    /// A URL or absolute path that is not a `/storage/v1/object/...` object path.
    #[error("not a storage object path (expected /storage/v1/object/<access>/<bucket>/...)")]
    NotAStorageObject,
    /// A storage object path naming a bucket that is not configured.
    #[error("unknown bucket {0:?}")]
    UnknownBucket(String),
    /// The first key segment is another user's id.
    #[error("path belongs to another user")]
    ForeignUser,
    /// A key with folders that does not start with the owner's id.
    #[error("path is not under the job owner's folder")]
    NotUserScoped,
    /// The owner's folder itself, with no file name.
    #[error("path names a folder, not a file")]
    NoFileName,
}

/// The configured storage host, compared by scheme, host and effective port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageHost {
    scheme: String,
    host: String,
    port: u16,
}

/// The configured storage host is not an `http(s)://host[:port]` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage host must be an http(s) URL without path, e.g. https://proj.supabase.co: {0}")]
pub struct InvalidStorageHost(String);

impl StorageHost {
    /// Parses `https://proj.supabase.co` (a trailing `/` is allowed, nothing more).
    pub fn parse(raw: &str) -> Result<Self, InvalidStorageHost> {
        let bad = |why: &str| InvalidStorageHost(why.to_owned());
        let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
        let scheme = url.scheme().to_owned();
        if scheme != "http" && scheme != "https" {
            return Err(bad("scheme is not http or https"));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(bad("path, query or credentials given"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        Ok(Self { scheme, host, port })
    }

    fn matches(&self, scheme: &str, authority: &str) -> bool {
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => match p.parse::<u16>() {
                Ok(port) => (h, port),
                Err(_) => return false,
            },
            _ => (authority, default_port),
        };
        scheme == self.scheme && host.eq_ignore_ascii_case(&self.host) && port == self.port
    }
}

/// What normalization needs beyond the path: the storage host whose URLs are accepted and
/// the bucket names a path may start with.
#[derive(Debug, Clone)]
pub struct StorageRules {
    host: Option<StorageHost>,
    buckets: Vec<String>,
}

impl StorageRules {
    /// Rules for `host` (no host: every URL is foreign) and `buckets`.
    pub fn new(host: Option<StorageHost>, buckets: Vec<String>) -> Self {
        Self { host, buckets }
    }

    fn is_bucket(&self, name: &str) -> bool {
        self.buckets.iter().any(|b| b == name)
    }
}

/// Turns a reported path or URL into `(bucket, key)` for a job of `owner` whose default
/// bucket is `default_bucket` (the job type's name).
pub fn normalize(
    reported: &str,
    owner: UserId,
    default_bucket: &str,
    rules: &StorageRules,
) -> Result<StoragePath, PathRejection> {
    if reported.len() > MAX_INPUT_BYTES {
        return Err(PathRejection::TooLong);
    }
    if reported.chars().any(char::is_control) {
        return Err(PathRejection::ControlCharacter);
    }
    if reported.contains('\\') {
        return Err(PathRejection::Backslash);
    }
    let (is_url, path) = match split_scheme(reported) {
        Some((scheme, rest)) => (true, url_path(&scheme, rest, rules)?),
        None => (false, reported),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments = decode_segments(path)?;
    if segments.is_empty() {
        return Err(PathRejection::Empty);
    }
    let object = ["storage", "v1", "object"];
    let (bucket, rest, bare_allowed) = if segments.starts_with(&object.map(String::from)) {
        let (bucket, rest) = storage_object(&segments[3..], rules)?;
        (bucket, rest, false)
    } else if is_url || reported.starts_with("/storage/") {
        return Err(PathRejection::NotAStorageObject);
    } else if segments.len() >= 2 && rules.is_bucket(&segments[0]) {
        (segments[0].clone(), &segments[1..], true)
    } else {
        (default_bucket.to_owned(), &segments[..], true)
    };
    let key = scope_to_owner(rest, owner, bare_allowed)?;
    if key.len() > MAX_KEY_BYTES {
        return Err(PathRejection::TooLong);
    }
    Ok(StoragePath { bucket, key })
}

/// `Some((lowercase scheme, rest after ':'))` when `s` starts with a URL scheme.
fn split_scheme(s: &str) -> Option<(String, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok && !scheme.contains('/')).then(|| (scheme.to_ascii_lowercase(), rest))
}

/// The path of an http(s) URL on the storage host.
fn url_path<'a>(
    scheme: &str,
    rest: &'a str,
    rules: &StorageRules,
) -> Result<&'a str, PathRejection> {
    if scheme != "http" && scheme != "https" {
        return Err(PathRejection::UnsupportedScheme(truncated(scheme)));
    }
    let rest = rest
        .strip_prefix("//")
        .ok_or_else(|| PathRejection::UnsupportedScheme(truncated(scheme)))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let on_host = rules
        .host
        .as_ref()
        .is_some_and(|h| !authority.contains('@') && h.matches(scheme, authority));
    if !on_host {
        return Err(PathRejection::ForeignHost(truncated(authority)));
    }
    Ok(path)
}

/// Non-empty segments, each percent-decoded once and checked.
fn decode_segments(path: &str) -> Result<Vec<String>, PathRejection> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|raw| {
            let seg = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| PathRejection::InvalidEncoding)?;
            if seg.chars().any(char::is_control) {
                Err(PathRejection::ControlCharacter)
            } else if seg.contains('\\') {
                Err(PathRejection::Backslash)
            } else if seg == "." || seg == ".." || seg.contains('/') {
                Err(PathRejection::Traversal)
            } else if seg.contains('%') {
                Err(PathRejection::InvalidEncoding)
            } else {
                Ok(seg.into_owned())
            }
        })
        .collect()
}

/// Bucket and key segments of what follows `/storage/v1/object/`: either
/// `<access>/<bucket>/...` or `<bucket>/...` (the upload path).
fn storage_object<'a>(
    after: &'a [String],
    rules: &StorageRules,
) -> Result<(String, &'a [String]), PathRejection> {
    let after = match after.first() {
        Some(a) if ACCESS_SEGMENTS.contains(&a.as_str()) => &after[1..],
        _ => after,
    };
    let (bucket, rest) = after
        .split_first()
        .ok_or(PathRejection::NotAStorageObject)?;
    if !rules.is_bucket(bucket) {
        return Err(PathRejection::UnknownBucket(truncated(bucket)));
    }
    Ok((bucket.clone(), rest))
}

/// The key for `segments`, which must start with the owner's id (or, when `bare_allowed`,
/// be a single file name, which is placed in the owner's folder).
fn scope_to_owner(
    segments: &[String],
    owner: UserId,
    bare_allowed: bool,
) -> Result<String, PathRejection> {
    let owner = owner.to_string();
    let Some(first) = segments.first() else {
        return Err(PathRejection::NoFileName);
    };
    if *first == owner {
        return match segments.len() {
            1 => Err(PathRejection::NoFileName),
            _ => Ok(segments.join("/")),
        };
    }
    if uuid::Uuid::parse_str(first).is_ok() {
        return Err(PathRejection::ForeignUser);
    }
    match segments {
        [name] if bare_allowed => Ok(format!("{owner}/{name}")),
        _ => Err(PathRejection::NotUserScoped),
    }
}

/// At most 64 characters of `s`, for error messages.
fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}
