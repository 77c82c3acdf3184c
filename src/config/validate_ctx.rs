//! The context every section check of `validate` gets: where relative paths resolve, and
//! where problems are recorded so that a file's every problem is reported at once.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;

/// What every section check gets: where relative paths resolve and where problems go.
/// A check that finds a problem records it and goes on with a stand-in value, so later
/// sections are checked too; [`validate`] returns no `Settings` once anything was recorded.
pub(super) struct Ctx<'a> {
    file: String,
    base: &'a Path,
    problems: RefCell<Vec<ConfigError>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(file: String, base: &'a Path) -> Self {
        Ctx {
            file,
            base,
            problems: RefCell::default(),
        }
    }

    /// Every problem recorded, in the order found.
    pub(super) fn into_problems(self) -> Vec<ConfigError> {
        self.problems.into_inner()
    }

    pub(super) fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: None,
            key: key.to_string(),
            message,
        }
    }

    pub(super) fn add(&self, key: &str, message: impl Into<String>) {
        let e = self.invalid(key, message.into());
        self.problems.borrow_mut().push(e);
    }

    /// The value, or `None` with its error recorded.
    pub(super) fn take<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.problems.borrow_mut().push(e)).ok()
    }

    /// The value, or `None` with the message recorded at `key`.
    pub(super) fn check<T>(&self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|m| self.add(key, m)).ok()
    }

    /// A path from the file: relative ones are relative to the file's directory.
    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// Seconds within `min..=max`; the default when unset.
    pub(super) fn secs(&self, key: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> Option<Duration> {
        let v = v.unwrap_or(default);
        if v < min || v > max {
            self.add(key, format!("{v} is outside {min}..={max}"));
            None
        } else {
            Some(Duration::from_secs(v))
        }
    }

    /// A timeout in milliseconds within `1..=120000`; the default when unset.
    pub(super) fn ms(&self, key: &str, v: Option<u64>, default: u64) -> Option<Duration> {
        let v = v.unwrap_or(default);
        if v == 0 || v > 120_000 {
            self.add(key, format!("{v} ms is outside 1..=120000"));
            None
        } else {
            Some(Duration::from_millis(v))
        }
    }

    pub(super) fn addr(&self, key: &str, v: &str) -> Option<SocketAddr> {
        self.check(
            key,
            v.parse().map_err(|_| format!("`{v}` is not an IP:port socket address")),
        )
    }
}

/// A stand-in for a value whose problem is already recorded (never returned in `Settings`).
pub(super) const UNSET_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
