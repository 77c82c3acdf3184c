//! The call to the AS: an egress permit of that AS, this AS's client authentication signed
//! with the permit held, the code spent, sent (a DPoP proof per attempt), and a 401 from a
//! resource server retried once with the previous transport certificate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client_form::{add_client_auth, TakenCode};
use super::dpop_call;
use super::outgoing::Outgoing;
use super::refusal::{refuse, Refusal, RefusalKind};
use super::route::Route;
use super::EgressResponse;
use crate::as_client::http_client::{AsRequest, AsResponse, TransportError};
use crate::as_client::registry::AsClient;
use crate::metrics::EgressLabels;
use crate::sidecar::Sidecar;

/// How long tokens bound to a rotated-away certificate are still served with it.
const PREVIOUS_CERT_GRACE: Duration = Duration::from_secs(3600);

/// What the AS answered (or how the call failed), and how long it took.
pub(super) struct Sent {
    pub(super) result: Result<AsResponse, TransportError>,
    pub(super) elapsed: Duration,
}

/// Sends one egress call; `Err` is the app's answer when it never reached the AS
/// (overloaded, signing failed). From the send on, the code is spent whatever the answer.
pub(super) async fn send(
    state: &Sidecar,
    client: &Arc<AsClient>,
    r: Route,
    out: Outgoing,
    mut form: Option<Vec<(String, String)>>,
    code: &mut Option<TakenCode<'_>>,
    iid: &str,
) -> Result<Sent, EgressResponse> {
    let (name, label) = (client.name(), r.label());
    // Egress has its own bound per AS, apart from logins: a login flood cannot starve it.
    let Ok(Ok(_permit)) = tokio::time::timeout(client.settings.par_timeout, client.egress_permits.acquire()).await
    else {
        let refusal = Refusal::new(
            RefusalKind::Overloaded,
            "par-sidecar: too many concurrent calls to the AS",
        );
        return Err(refuse(state, name, label, iid, refusal));
    };
    // Signed only now, with the permit held: a call turned away as overloaded costs no
    // signature (a flood of egress calls cannot keep the signer busy for nothing).
    if let Some(f) = form.as_mut() {
        let record = code.as_ref().map(|t| &t.record);
        if let Err(refusal) = add_client_auth(state, client, f, record).await {
            return Err(refuse(state, name, label, iid, refusal));
        }
    }
    let started = Instant::now();
    let http = client.http.load();
    let mut headers = out.headers;
    // DPoP clients: `Authorization: DPoP` and a proof per attempt (RFC 9449).
    let dpop = dpop_call::prepare(client, r, &mut headers);
    let call = AsRequest {
        method: out.method,
        url: out.url,
        headers,
        form,
        body: out.body,
        timeout: client.settings.par_timeout,
    };
    // From here the code goes to the AS: it is spent whatever the answer.
    if let Some(taken) = code.as_mut() {
        taken.consume();
    }
    let mut result = dpop_call::send(state, client, dpop.as_ref(), http.as_ref().as_ref(), call.clone()).await?;
    // A token bound to the certificate we just rotated away from: the resource server says
    // 401. Present the previous certificate once, while such tokens can still be alive.
    if !r.authenticates_client() && matches!(&result, Ok(resp) if resp.status == 401) {
        if let Some(prev) = client.previous_http.load_full() {
            if prev.retired_at.elapsed() < PREVIOUS_CERT_GRACE {
                state.metrics.egress_request(EgressLabels {
                    as_name: name,
                    route: label,
                    outcome: "retry_previous_cert",
                    as_error: "",
                });
                result = dpop_call::send(state, client, dpop.as_ref(), prev.http.as_ref().as_ref(), call).await?;
            }
        }
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .egress_duration
        .with_label_values(&[name, label])
        .observe(elapsed.as_secs_f64());
    Ok(Sent { result, elapsed })
}
