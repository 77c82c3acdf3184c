//! Which AS keeps an authorize endpoint that two configured ASs name with the same client_id
//! (issue 18 item 5). The sidecar tells ASs apart by endpoint and client_id; when both are
//! equal a redirect cannot be attributed, and it used to refuse *every* AS involved, so one
//! bank's discovery document naming another bank's endpoint took that other bank out of
//! service. Now:
//!
//! 1. The AS that *owns* the endpoint keeps it: the endpoint is on its issuer's host and port,
//!    or on a host in its `authorize_hosts`. Only the others are refused, and already while
//!    the owner's own metadata has not loaded (its logins are then held back as its own).
//! 2. Failing a single owner, an AS whose *refreshed* document moved it onto an endpoint that
//!    another AS was already serving is refused, and the AS that was there keeps it: a
//!    refresh never moves an AS onto another configured AS's endpoint.
//! 3. Otherwise (say both ASs name, at their first load, an endpoint neither owns) the
//!    redirects cannot be attributed and every AS involved is refused, as before: set
//!    `authorize_hosts` on the bank the endpoint belongs to, or give each a distinct client_id.
//!
//! Deterministic at start-up (rule 1 and 3 do not depend on which document loaded first),
//! so every replica attributes the same way.

use crate::protocol::authorize::AuthorizeEndpoint;
use crate::protocol::AsIndex;

/// One configured AS and its current authorize endpoint (None: no metadata loaded).
pub struct Claim<'a> {
    pub as_index: AsIndex,
    pub name: &'a str,
    pub endpoint: Option<&'a AuthorizeEndpoint>,
    pub client_id: &'a str,
    /// A refreshed document moved the AS onto its endpoint while another AS was using it.
    pub moved_onto: bool,
}

/// Whether the AS (by index) owns an endpoint: on its issuer host and port or on one of its
/// `authorize_hosts`; known from the configuration alone.
pub type Owns<'a> = &'a dyn Fn(AsIndex, &AuthorizeEndpoint) -> bool;

/// The outcome for one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No conflict, or this AS keeps the endpoint.
    Clear,
    /// Refused; `winner` is the AS that keeps the endpoint (None: nobody does).
    Refused { winner: Option<AsIndex>, reason: String },
}

/// The verdict for every claim, in order. Quadratic in the number of ASs, and run only
/// when an AS's authorize endpoint appears or changes.
pub fn resolve(claims: &[Claim], owns: Owns) -> Vec<Verdict> {
    claims.iter().map(|mine| verdict(mine, claims, owns)).collect()
}

fn verdict(mine: &Claim, claims: &[Claim], owns: Owns) -> Verdict {
    let Some(ep) = mine.endpoint else {
        return Verdict::Clear;
    };
    let same_client = || claims.iter().filter(|o| o.client_id == mine.client_id);
    // Every AS with this client_id that owns the endpoint, loaded or not.
    let owners: Vec<&Claim> = same_client().filter(|o| owns(o.as_index, ep)).collect();
    let group: Vec<&Claim> = same_client()
        .filter(|o| o.endpoint.is_some_and(|e| e.same_endpoint(ep)))
        .collect();
    let winner = if owners.len() == 1 {
        Some((owners[0], true))
    } else if group.len() < 2 {
        return Verdict::Clear;
    } else {
        // Among the owners using it if several, else among all: the one that did not move
        // onto it.
        let using: Vec<&Claim> = owners
            .iter()
            .filter(|o| o.endpoint.is_some_and(|e| e.same_endpoint(ep)))
            .copied()
            .collect();
        let pool = if using.is_empty() { group } else { using };
        let stayed: Vec<&Claim> = pool.into_iter().filter(|c| !c.moved_onto).collect();
        (stayed.len() == 1).then(|| (stayed[0], false))
    };
    let url = ep.url();
    match winner {
        Some((w, _)) if w.as_index == mine.as_index => Verdict::Clear,
        Some((w, owner)) => Verdict::Refused {
            winner: Some(w.as_index),
            reason: format!(
                "authorization endpoint {url} with the same client_id {} `{}` ({}): refused so that `{}` keeps its logins; fix this AS's discovery document or give it a distinct client_id",
                if owner { "belongs to" } else { "was already used by" },
                w.name,
                if owner { "its issuer host or authorize_hosts" } else { "before this AS's refreshed document moved onto it" },
                w.name,
            ),
        },
        None => {
            let other = same_client()
                .filter(|o| o.endpoint.is_some_and(|e| e.same_endpoint(ep))).find(|o| o.as_index != mine.as_index).map_or("", |o| o.name);
            Verdict::Refused {
                winner: None,
                reason: format!(
                    "same authorization endpoint and client_id as `{other}`: redirects cannot be told apart (set authorize_hosts on the bank {url} belongs to, or give each a distinct client_id)"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(u: &str) -> AuthorizeEndpoint {
        AuthorizeEndpoint::new(url::Url::parse(u).unwrap())
    }

    fn claim<'a>(i: usize, name: &'a str, e: Option<&'a AuthorizeEndpoint>, id: &'a str, moved: bool) -> Claim<'a> {
        Claim {
            as_index: AsIndex::new(i),
            name,
            endpoint: e,
            client_id: id,
            moved_onto: moved,
        }
    }

    fn winner(v: &Verdict) -> Option<usize> {
        match v {
            Verdict::Clear => None,
            Verdict::Refused { winner, .. } => winner.map(AsIndex::get),
        }
    }

    /// Bank A (index 0) owns auth.bank-a.example, bank C (2) auth.bank-c.example.
    fn owns(i: AsIndex, e: &AuthorizeEndpoint) -> bool {
        matches!(
            (i.get(), e.host()),
            (0, "auth.bank-a.example") | (2, "auth.bank-c.example")
        )
    }

    #[test]
    fn the_owner_keeps_its_endpoint_whoever_loaded_first() {
        let (a, c) = (
            ep("https://auth.bank-a.example/authorize"),
            ep("https://auth.bank-c.example/authorize"),
        );
        for moved in [false, true] {
            let v = resolve(
                &[
                    claim(0, "bank-a", Some(&a), "tpp", moved),
                    claim(1, "bank-b", Some(&a), "tpp", !moved),
                    claim(2, "bank-c", Some(&c), "tpp", false),
                ],
                &owns,
            );
            assert_eq!(v[0], Verdict::Clear);
            assert_eq!(winner(&v[1]), Some(0));
            assert_eq!(v[2], Verdict::Clear, "an uninvolved AS is untouched");
            let Verdict::Refused { reason, .. } = &v[1] else {
                panic!()
            };
            assert!(reason.contains("belongs to `bank-a`"), "{reason}");
        }
        // Before the owner's metadata loads, too; with another client_id it is no conflict.
        let v = resolve(
            &[
                claim(0, "bank-a", None, "tpp", false),
                claim(1, "bank-b", Some(&a), "tpp", false),
            ],
            &owns,
        );
        assert_eq!((v[0].clone(), winner(&v[1])), (Verdict::Clear, Some(0)));
        let v = resolve(
            &[
                claim(0, "bank-a", None, "tpp-a", false),
                claim(1, "bank-b", Some(&a), "tpp-b", false),
            ],
            &owns,
        );
        assert!(v.iter().all(|x| *x == Verdict::Clear));
    }

    #[test]
    fn a_refresh_never_moves_an_as_onto_another_ones_endpoint() {
        let hub = ep("https://hub.example/authorize");
        let v = resolve(
            &[
                claim(0, "bank-a", Some(&hub), "tpp", false),
                claim(1, "bank-b", Some(&hub), "tpp", true),
            ],
            &owns,
        );
        assert_eq!(v[0], Verdict::Clear);
        assert_eq!(winner(&v[1]), Some(0));
        let Verdict::Refused { reason, .. } = &v[1] else {
            panic!()
        };
        assert!(reason.contains("was already used by `bank-a`"), "{reason}");
    }

    #[test]
    fn without_an_owner_or_a_mover_nobody_can_be_attributed() {
        let hub = ep("https://hub.example/authorize");
        let v = resolve(
            &[
                claim(0, "bank-a", Some(&hub), "tpp", false),
                claim(1, "bank-b", Some(&hub), "tpp", false),
            ],
            &owns,
        );
        for x in &v {
            let Verdict::Refused { winner: None, reason } = x else {
                panic!("{x:?}")
            };
            assert!(
                reason.starts_with("same authorization endpoint and client_id as `bank-"),
                "{reason}"
            );
        }
        // Two owners (one issuer host for two tenants) and nobody moved: the same.
        let both = |_: AsIndex, _: &AuthorizeEndpoint| true;
        let v = resolve(
            &[
                claim(0, "bank-a", Some(&hub), "tpp", false),
                claim(1, "bank-b", Some(&hub), "tpp", false),
            ],
            &both,
        );
        assert!(v.iter().all(|x| matches!(x, Verdict::Refused { winner: None, .. })));
    }

    #[test]
    fn a_hub_with_distinct_client_ids_is_no_conflict() {
        let hub = ep("https://hub.example/authorize");
        let v = resolve(
            &[
                claim(0, "bank-a", Some(&hub), "tpp-a", false),
                claim(1, "bank-b", Some(&hub), "tpp-b", true),
            ],
            &owns,
        );
        assert!(v.iter().all(|x| *x == Verdict::Clear));
    }
}
