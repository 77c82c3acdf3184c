//! Origins (scheme, host, port) as `par.redirect_uri_origins` names them and as a
//! redirect_uri is compared with them.

use url::Url;

use crate::protocol::authorize::norm_host;

/// An origin named in `par.redirect_uri_origins`: scheme, host, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredOrigin {
    scheme: String,
    host: url::Host<String>,
    port: u16,
}

impl ConfiguredOrigin {
    /// `https://app.example.com` or `https://app.example.com:8443`: nothing else (no path,
    /// query, userinfo), so the list reads as what it is.
    pub fn parse(s: &str) -> Result<Self, String> {
        let u = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        if !matches!(u.scheme(), "https" | "http")
            || !u.username().is_empty()
            || u.password().is_some()
            || u.path() != "/"
            || u.query().is_some()
            || u.fragment().is_some()
        {
            return Err(format!("`{s}` is not an origin like https://app.example.com[:port]"));
        }
        Self::of(&u).ok_or_else(|| format!("`{s}` has no host"))
    }

    pub fn of(u: &Url) -> Option<Self> {
        Some(ConfiguredOrigin {
            scheme: u.scheme().to_string(),
            host: canonical_host(u.host()?.to_owned()),
            port: u.port_or_known_default()?,
        })
    }
}

/// Domains compared without a trailing dot and in lower case (the url crate lower-cases).
pub fn canonical_host(h: url::Host<String>) -> url::Host<String> {
    match h {
        url::Host::Domain(d) => url::Host::Domain(norm_host(&d)),
        other => other,
    }
}
