//! The browser-facing error boundary: one type, rendered in one place, as HTML or JSON.
//! The page names a short code and the interaction id; it never echoes AS internals.

use crate::protocol::InteractionId;

#[derive(Debug, Clone)]
pub struct BrowserError {
    pub status: u16,
    /// Short, stable, documented (README "Failure modes").
    pub code: &'static str,
    pub interaction_id: InteractionId,
    /// The configured name of the AS (bank) concerned, shown so the user and support know
    /// which bank failed. A validated name (`[a-z0-9-]`): nothing to escape.
    pub as_name: Option<String>,
}

impl BrowserError {
    pub fn new(status: u16, code: &'static str, interaction_id: InteractionId) -> Self {
        BrowserError {
            status,
            code,
            interaction_id,
            as_name: None,
        }
    }

    pub fn at(mut self, as_name: &str) -> Self {
        self.as_name = Some(as_name.to_string());
        self
    }

    fn message(&self) -> &'static str {
        match self.code {
            "not_ready" => "The sign-in service is starting. Please try again in a moment.",
            "too_many_logins" => "Too many sign-in attempts right now. Please try again in a minute.",
            "as_timeout" | "as_unavailable" | "as_tls_failure" | "as_bad_response" => {
                "The identity provider could not be reached. Please try again later."
            }
            _ => "Sign-in could not be started. Please try again later.",
        }
    }

    /// `(content-type, body)`: JSON when the client asked for it, HTML otherwise.
    pub fn render(&self, wants_json: bool) -> (&'static str, Vec<u8>) {
        if wants_json {
            let body = serde_json::json!({
                "error": self.code,
                "message": self.message(),
                "interaction_id": self.interaction_id.to_string(),
                "authorization_server": self.as_name,
            });
            ("application/json", serde_json::to_vec(&body).unwrap_or_default())
        } else {
            // Every interpolated value is a static string, a UUID or a validated AS name
            // (`[a-z0-9-]`): nothing to escape.
            let bank = self
                .as_name
                .as_deref()
                .map(|n| format!("Identity provider: <code>{n}</code><br>"))
                .unwrap_or_default();
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in error</title></head>\
                 <body><h1>Sign-in error</h1><p>{}</p><p>{bank}Error code: <code>{}</code><br>\
                 Interaction id: <code>{}</code></p></body></html>\n",
                self.message(),
                self.code,
                self.interaction_id
            );
            ("text/html; charset=utf-8", body.into_bytes())
        }
    }
}

/// Whether an `Accept` header prefers JSON over HTML.
pub fn wants_json(accept: Option<&[u8]>) -> bool {
    let Some(a) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return false;
    };
    let a = a.to_ascii_lowercase();
    a.contains("application/json") && !a.contains("text/html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_json_and_html_with_code_and_id() {
        let e = BrowserError::new(502, "par_rejected", InteractionId::new());
        let (ct, body) = e.render(true);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "par_rejected");
        assert_eq!(v["interaction_id"], e.interaction_id.to_string());
        let (ct, body) = e.render(false);
        assert!(ct.starts_with("text/html"));
        let s = String::from_utf8(body).unwrap();
        assert!(s.contains("par_rejected") && s.contains(&e.interaction_id.to_string()));
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_json(Some(b"application/json")));
        assert!(!wants_json(Some(
            b"text/html,application/xhtml+xml,application/json;q=0.9"
        )));
        assert!(!wants_json(None));
        assert!(!wants_json(Some(b"*/*")));
    }
}
