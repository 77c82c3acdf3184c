//! Label names as constants and typed label sets for the hot families: a call site names
//! each value (`outcome: "success"`), so two labels cannot be swapped or one forgotten, and
//! the family's label order is written once, here and in [`Metrics::new`].

use super::Metrics;

/// Label names, as dashboards and alerts query them.
pub mod label {
    pub const AS: &str = "as";
    pub const ROUTE: &str = "route";
    pub const OUTCOME: &str = "outcome";
    pub const AS_ERROR: &str = "as_error";
    pub const CODE: &str = "code";
    pub const GRANT: &str = "grant";
}

/// `par_sidecar_egress_requests_total`: one back-channel call of the app.
pub const EGRESS_REQUESTS: [&str; 4] = [label::AS, label::ROUTE, label::OUTCOME, label::AS_ERROR];
/// `par_sidecar_callback_checks_total`: one authorization response checked.
pub const CALLBACK_CHECKS: [&str; 2] = [label::AS, label::OUTCOME];
/// `par_sidecar_token_response_checks_total`: one token or userinfo response checked.
pub const TOKEN_CHECKS: [&str; 3] = [label::AS, label::GRANT, label::OUTCOME];
/// `par_sidecar_errors_total`: one error page.
pub const BROWSER_ERRORS: [&str; 1] = [label::CODE];

/// The labels of one `par_sidecar_egress_requests_total` sample (`as` empty when no AS
/// could be named, `as_error` empty unless the AS answered an OAuth error).
#[derive(Debug, Clone, Copy)]
pub struct EgressLabels<'a> {
    pub as_name: &'a str,
    pub route: &'a str,
    pub outcome: &'a str,
    pub as_error: &'a str,
}

/// The labels of one `par_sidecar_callback_checks_total` sample.
#[derive(Debug, Clone, Copy)]
pub struct CallbackLabels<'a> {
    pub as_name: &'a str,
    pub outcome: &'a str,
}

/// The labels of one `par_sidecar_token_response_checks_total` sample.
#[derive(Debug, Clone, Copy)]
pub struct TokenCheckLabels<'a> {
    pub as_name: &'a str,
    pub grant: &'a str,
    pub outcome: &'a str,
}

impl Metrics {
    pub fn egress_request(&self, l: EgressLabels<'_>) {
        self.egress_requests
            .with_label_values(&[l.as_name, l.route, l.outcome, l.as_error])
            .inc();
    }

    pub fn callback_check(&self, l: CallbackLabels<'_>) {
        self.callback_checks.with_label_values(&[l.as_name, l.outcome]).inc();
    }

    pub fn token_check(&self, l: TokenCheckLabels<'_>) {
        self.token_checks
            .with_label_values(&[l.as_name, l.grant, l.outcome])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_label_sets_land_on_their_own_labels() {
        let m = Metrics::new();
        m.egress_request(EgressLabels {
            as_name: "bank-a",
            route: "token",
            outcome: "as_error",
            as_error: "invalid_grant",
        });
        m.callback_check(CallbackLabels {
            as_name: "bank-a",
            outcome: "iss_mixup",
        });
        m.token_check(TokenCheckLabels {
            as_name: "bank-a",
            grant: "refresh_token",
            outcome: "valid",
        });
        let text = String::from_utf8(m.render()).unwrap();
        for sample in [
            r#"par_sidecar_egress_requests_total{as="bank-a",as_error="invalid_grant",outcome="as_error",route="token"} 1"#,
            r#"par_sidecar_callback_checks_total{as="bank-a",outcome="iss_mixup"} 1"#,
            r#"par_sidecar_token_response_checks_total{as="bank-a",grant="refresh_token",outcome="valid"} 1"#,
        ] {
            assert!(text.contains(sample), "{sample} not in:\n{text}");
        }
    }
}
