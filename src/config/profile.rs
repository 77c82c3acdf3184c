//! Ecosystem profiles (`profile:`, issue 20 item 3): one rule table per ecosystem, each rule
//! with the public source it comes from. A profile only fills keys the config leaves unset
//! and refuses a config that contradicts a rule; it never changes what an explicit key
//! means. The table is data so that README ("Ecosystems" -> "Profiles") is generated from
//! it and a test keeps the two equal.

use super::file;

/// Where a rule comes from: a short name (used in errors and the README table) and the
/// document, section or class it rests on.
pub struct Source {
    pub short: &'static str,
    pub cites: &'static str,
}

/// Every source a rule names. README lists them under the table.
pub const SOURCES: &[Source] = &[
    Source {
        short: "UAE-SP",
        cites: "Open Finance UAE Standards v1.2, Security Profile - FAPI, https://openfinanceuae.atlassian.net/wiki/spaces/standardsv1dot2final/pages/277938258 (§2.1 AS considerations: mTLS sender-constrained tokens, private_key_jwt, signed request objects at PAR; §2.3: \"For JWS, both Client Applications and Authorization Servers shall use the PS256 algorithm\")",
    },
    Source {
        short: "CS-MS-PLAN",
        cites: "OpenID conformance suite, `FAPI2MessageSigningFinalClientTestPlan` / `FAPI2MessageSigningFinalTestPlan.certificationProfileName` (cbuae: only private_key_jwt, only signed requests, only MTLS sender constraining, no JARM; ksa: only signed requests, only MTLS sender constraining, no JARM; openbanking_uk: no JARM)",
    },
    Source {
        short: "CS-MTLS",
        cites: "OpenID conformance suite, `CbuaeClientProfileBehavior`, `KsaClientProfileBehavior`, `OpenBankingUkClientProfileBehavior`, `OpenBankingBrazilClientProfileBehavior`: `requiresMtlsEverywhere() = true`; `AbstractFAPI2SPFinalClientTest` then fails a client that calls the top-level `par` or `token` endpoint",
    },
    Source {
        short: "CS-CC",
        cites: "OpenID conformance suite, `supportsClientCredentialsGrant() = true` in `KsaClientProfileBehavior` (consent via account-request), `OpenBankingUkClientProfileBehavior`, `OpenBankingBrazilClientProfileBehavior`",
    },
    Source {
        short: "OFB-SP",
        cites: "Open Finance Brasil Financial-grade API Security Profile 1.0 ID3, https://github.com/OpenBanking-Brasil/specs-seguranca (open-banking-brasil-financial-api-1_ID3.md, \"Signing algorithm considerations\": clients shall use PS256); conformance suite `OpenBankingBrazilClientProfileBehavior` (PS256, \"BrazilOB-6.1\")",
    },
    Source {
        short: "SP-DOCS",
        cites: "Singpass developer docs, FAPI 2.0 API, https://docs.developer.singpass.gov.sg/docs/technical-specifications (integration guide 1 \"Authorization request\": PAR body of form parameters incl. DPoP parameters; \"Generation of client assertion\": private_key_jwt, ES256/ES384/ES512; \"Client JWK requirements\": EC signing keys; integration guide 4 \"Parsing the ID token\": a JWS encrypted as a JWE)",
    },
    Source {
        short: "CP-DOCS",
        cites: "Corppass docs, https://docs.corppass.gov.sg/technical-specifications/corppass-authorization-api-fapi-2.0 (\"JWE-encrypted ID tokens, JWT-based client authentication, sender-constrained access tokens via DPoP\"); key concepts \"Client JWKS\" and the JWKS FAQ: EC signing keys only",
    },
];

/// How a profile constrains `client.sender_constraint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Only this value is accepted; it is also the default.
    Only(&'static str),
    /// The default when unset; the other value is accepted.
    Default(&'static str),
}

/// How a profile constrains `par.request_object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestObject {
    /// A signed request object (JAR) at PAR: `par.request_object: false` is refused.
    Required,
    /// Plain form parameters at PAR unless `par.request_object` says otherwise.
    PlainByDefault,
}

/// A rule and its source's short name (one of [`SOURCES`]).
#[derive(Debug, Clone, Copy)]
pub struct Sourced<T> {
    pub rule: T,
    pub source: &'static str,
}

/// One ecosystem's rules. `None`: the profile says nothing (the FAPI 2.0 default holds).
pub struct Rules {
    pub name: &'static str,
    /// `alg` of every signing key and of the request object key must be one of these.
    pub signing_algs: Option<Sourced<&'static [&'static str]>>,
    /// The only `client.auth_method`; also its default.
    pub auth_method: Option<Sourced<&'static str>>,
    pub sender_constraint: Option<Sourced<Sender>>,
    /// Every back-channel call to its mTLS alias: `par_endpoint: top_level`/`never` refused.
    pub aliases_everywhere: Option<&'static str>,
    pub request_object: Option<Sourced<RequestObject>>,
    /// JARM is not used: `client.response_mode: jwt` refused.
    pub no_jarm: Option<&'static str>,
    /// The AS encrypts the ID token: an encryption key is required.
    pub encrypted_id_token: Option<&'static str>,
    /// Consent creation uses a client_credentials token: the egress forwards that grant by
    /// default when the app authenticates to it.
    pub client_credentials: Option<&'static str>,
}

const NOTHING: Rules = Rules {
    name: "",
    signing_algs: None,
    auth_method: None,
    sender_constraint: None,
    aliases_everywhere: None,
    request_object: None,
    no_jarm: None,
    encrypted_id_token: None,
    client_credentials: None,
};

const fn s<T>(rule: T, source: &'static str) -> Option<Sourced<T>> {
    Some(Sourced { rule, source })
}

const PS256: &[&str] = &["PS256"];
const EC: &[&str] = &["ES256", "ES384", "ES512"];

/// Today's behaviour: FAPI 2.0 Security Profile + Message Signing, no ecosystem rule.
pub const FAPI2_MESSAGE_SIGNING: Rules = Rules {
    name: "fapi2-message-signing",
    ..NOTHING
};

pub const CBUAE: Rules = Rules {
    name: "cbuae",
    signing_algs: s(PS256, "UAE-SP"),
    auth_method: s("private_key_jwt", "UAE-SP"),
    sender_constraint: s(Sender::Only("mtls"), "UAE-SP"),
    aliases_everywhere: Some("CS-MTLS"),
    request_object: s(RequestObject::Required, "UAE-SP"),
    no_jarm: Some("CS-MS-PLAN"),
    ..NOTHING
};

pub const KSA: Rules = Rules {
    name: "ksa",
    sender_constraint: s(Sender::Only("mtls"), "CS-MS-PLAN"),
    aliases_everywhere: Some("CS-MTLS"),
    request_object: s(RequestObject::Required, "CS-MS-PLAN"),
    no_jarm: Some("CS-MS-PLAN"),
    client_credentials: Some("CS-CC"),
    ..NOTHING
};

pub const UK_OPENBANKING: Rules = Rules {
    name: "uk-openbanking",
    aliases_everywhere: Some("CS-MTLS"),
    no_jarm: Some("CS-MS-PLAN"),
    client_credentials: Some("CS-CC"),
    ..NOTHING
};

pub const BRAZIL: Rules = Rules {
    name: "brazil",
    signing_algs: s(PS256, "OFB-SP"),
    aliases_everywhere: Some("CS-MTLS"),
    client_credentials: Some("CS-CC"),
    ..NOTHING
};

pub const SINGPASS: Rules = Rules {
    name: "singpass",
    signing_algs: s(EC, "SP-DOCS"),
    auth_method: s("private_key_jwt", "SP-DOCS"),
    sender_constraint: s(Sender::Default("dpop"), "SP-DOCS"),
    request_object: s(RequestObject::PlainByDefault, "SP-DOCS"),
    encrypted_id_token: Some("SP-DOCS"),
    ..NOTHING
};

pub const CORPPASS: Rules = Rules {
    name: "corppass",
    signing_algs: s(EC, "CP-DOCS"),
    auth_method: s("private_key_jwt", "CP-DOCS"),
    sender_constraint: s(Sender::Only("dpop"), "CP-DOCS"),
    encrypted_id_token: Some("CP-DOCS"),
    ..NOTHING
};

/// Every profile, the default first.
pub const PROFILES: &[&Rules] = &[
    &FAPI2_MESSAGE_SIGNING,
    &CBUAE,
    &KSA,
    &UK_OPENBANKING,
    &BRAZIL,
    &SINGPASS,
    &CORPPASS,
];

/// The profile by name; an unknown one is an error listing the allowed values.
pub fn by_name(name: &str) -> Result<&'static Rules, String> {
    PROFILES.iter().copied().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        format!("`{name}` is not one of {}", names.join(", "))
    })
}

/// The keys of one AS a profile may fill or refuse, taken before validation reads them.
pub struct Knobs<'a> {
    /// The effective (merged) client block of this AS.
    pub client: &'a mut file::ClientFile,
    pub par_endpoint: &'a mut Option<file::Choice<super::AliasPolicy>>,
    pub request_object: &'a mut Option<bool>,
}

/// What a profile did to one AS: its name and the defaults it filled (`key=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub profile: &'static str,
    pub defaults: Vec<String>,
    /// The egress should forward client_credentials for this AS's consent creation.
    pub wants_client_credentials: bool,
    /// The AS encrypts ID tokens: a plain one is refused at the token call.
    pub encrypted_id_token: bool,
}

impl Applied {
    /// `cbuae (defaults applied: client.auth_method=private_key_jwt)`, for check-config.
    pub fn describe(&self) -> String {
        if self.defaults.is_empty() {
            format!("{} (no defaults applied)", self.profile)
        } else {
            format!("{} (defaults applied: {})", self.profile, self.defaults.join(", "))
        }
    }

    /// Said when the profile creates consents with client_credentials but the egress cannot
    /// forward it (no app authentication).
    pub fn client_credentials_warning(&self, app_authenticates: bool) -> Option<String> {
        (self.wants_client_credentials && !app_authenticates).then(|| {
            format!(
                "profile `{}` creates consents with a client_credentials token; the egress refuses that grant \
                 until egress.app_client_secret_sha256 or egress.app_client_secret_file is set",
                self.profile
            )
        })
    }
}

/// A refusal: the key to fix and why (the rule and its source).
pub struct Refusal {
    pub key: String,
    pub message: String,
}

impl Rules {
    /// Fills unset keys and refuses contradictions. `ck` names a client key and `ak` an AS
    /// key where the user can fix it; `request_object_key` names `par.request_object`.
    pub fn apply(
        &'static self,
        as_name: &str,
        k: Knobs,
        ck: &dyn Fn(&str) -> String,
        ak: &dyn Fn(&str) -> String,
    ) -> Result<Applied, Refusal> {
        let refuse = |key: String, rule: &str, source: &str| Refusal {
            key,
            message: format!(
                "refused by profile `{}` at AS `{as_name}`: {rule} (source: {source}, README \"Profiles\")",
                self.name
            ),
        };
        let mut defaults = Vec::new();
        let c = k.client;
        if let Some(r) = self.signing_algs {
            let keys = c.signing_key.iter().map(|k| ("signing_key".to_string(), k));
            let list = c.signing_keys.iter().flatten().enumerate();
            let keys = keys.chain(list.map(|(i, k)| (format!("signing_keys[{i}]"), k)));
            let ro = c.request_object_signing_key.iter();
            for (key, f) in keys.chain(ro.map(|k| ("request_object_signing_key".to_string(), k))) {
                if !r.rule.contains(&f.alg.as_str()) {
                    let rule = format!("signing alg must be one of {}, not `{}`", r.rule.join(", "), f.alg);
                    return Err(refuse(ck(&format!("{key}.alg")), &rule, r.source));
                }
            }
        }
        if let Some(r) = self.auth_method {
            match c.auth_method.as_ref().map(file::Choice::as_str) {
                None => {
                    c.auth_method = Some(file::Choice::new(r.rule));
                    defaults.push(format!("client.auth_method={}", r.rule));
                }
                Some(m) if m != r.rule => {
                    let rule = format!("client authentication is {} only, not `{m}`", r.rule);
                    return Err(refuse(ck("auth_method"), &rule, r.source));
                }
                Some(_) => {}
            }
        }
        if let Some(r) = self.sender_constraint {
            let (value, only) = match r.rule {
                Sender::Only(v) => (v, true),
                Sender::Default(v) => (v, false),
            };
            match c.sender_constraint.as_ref().map(file::Choice::as_str) {
                None => {
                    c.sender_constraint = Some(file::Choice::new(value));
                    defaults.push(format!("client.sender_constraint={value}"));
                }
                Some(v) if only && v != value => {
                    let rule = format!("tokens are sender-constrained with {value} only, not `{v}`");
                    return Err(refuse(ck("sender_constraint"), &rule, r.source));
                }
                Some(_) => {}
            }
        }
        if let Some(src) = self.aliases_everywhere {
            if let Some(v @ ("top_level" | "never")) = k.par_endpoint.as_ref().map(file::Choice::as_str) {
                let rule =
                    format!("every call (PAR included) goes to its mtls_endpoint_aliases entry, so `{v}` is refused");
                return Err(refuse(ak("par_endpoint"), &rule, src));
            }
        }
        if let Some(r) = self.request_object {
            match (r.rule, *k.request_object) {
                (RequestObject::Required, Some(false)) => {
                    let rule = "PAR carries a signed request object (JAR), so `false` is refused";
                    return Err(refuse("par.request_object".into(), rule, r.source));
                }
                (RequestObject::PlainByDefault, None) => {
                    *k.request_object = Some(false);
                    defaults.push("par.request_object=false".into());
                }
                _ => {}
            }
        }
        if let Some(src) = self.no_jarm {
            if let Some(m) = c.response_mode.as_ref().map(file::Choice::as_str) {
                let rule = format!("JARM is not used, so response_mode `{m}` is refused");
                return Err(refuse(ck("response_mode"), &rule, src));
            }
        }
        if let Some(src) = self.encrypted_id_token {
            if c.encryption_key.is_none() && c.encryption_keys.as_ref().is_none_or(|v| v.is_empty()) {
                let rule = "the AS encrypts the ID token (a JWS in a JWE), so an encryption key is required";
                return Err(refuse(ck("encryption_key"), rule, src));
            }
        }
        Ok(Applied {
            profile: self.name,
            defaults,
            wants_client_credentials: self.client_credentials.is_some(),
            encrypted_id_token: self.encrypted_id_token.is_some(),
        })
    }
}

/// One AS's keys after its profile: what validation reads instead of the file's.
pub struct ForAs {
    pub client: file::ClientFile,
    pub par_endpoint: Option<file::Choice<super::AliasPolicy>>,
    pub request_object: Option<bool>,
    pub applied: Applied,
}

/// Resolves the AS's profile (its own `profile`, else the top-level one, else the default)
/// and applies it to copies of the keys it governs: `merged` is the AS's effective client
/// block, `request_object` the sidecar-wide `par.request_object`.
pub fn for_as(
    top: Option<&str>,
    a: &file::AuthorizationServerFile,
    merged: &file::ClientFile,
    request_object: Option<bool>,
    as_name: &str,
    ck: &dyn Fn(&str) -> String,
    ak: &dyn Fn(&str) -> String,
) -> Result<ForAs, Refusal> {
    let rules =
        by_name(a.profile.as_deref().or(top).unwrap_or(FAPI2_MESSAGE_SIGNING.name)).map_err(|message| Refusal {
            key: if a.profile.is_some() {
                ak("profile")
            } else {
                "profile".into()
            },
            message,
        })?;
    let mut out = ForAs {
        client: merged.clone(),
        par_endpoint: a.par_endpoint.clone(),
        request_object,
        applied: Applied {
            profile: rules.name,
            defaults: Vec::new(),
            wants_client_credentials: false,
            encrypted_id_token: false,
        },
    };
    let knobs = Knobs {
        client: &mut out.client,
        par_endpoint: &mut out.par_endpoint,
        request_object: &mut out.request_object,
    };
    out.applied = rules.apply(as_name, knobs, ck, ak)?;
    Ok(out)
}

/// The egress grant list when `egress.allowed_grant_types` is unset: the defaults, plus
/// `client_credentials` when an AS's profile creates consents with it and the app
/// authenticates to the egress (the rule on main: never without app authentication).
pub fn default_grant_types(applied: &mut [Applied], base: &[&str], app_authenticates: bool) -> Vec<String> {
    let mut out: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    if app_authenticates && applied.iter().any(|a| a.wants_client_credentials) {
        out.push("client_credentials".into());
        for a in applied.iter_mut().filter(|a| a.wants_client_credentials) {
            a.defaults.push("egress.allowed_grant_types+=client_credentials".into());
        }
    }
    out
}

/// The README table (one row per rule, one column per profile) and the source list,
/// exactly as README "Profiles" must show them.
pub fn readme_table() -> String {
    let mut rows: Vec<(&str, Vec<String>)> = vec![
        (
            "Signing algs",
            cells(|p| {
                p.signing_algs
                    .map(|r| (format!("{} only", r.rule.join(", ")), r.source))
            }),
        ),
        (
            "`client.auth_method`",
            cells(|p| p.auth_method.map(|r| (format!("{} only", r.rule), r.source))),
        ),
        (
            "`client.sender_constraint`",
            cells(|p| {
                p.sender_constraint.map(|r| match r.rule {
                    Sender::Only(v) => (format!("{v} only"), r.source),
                    Sender::Default(v) => (format!("{v} by default"), r.source),
                })
            }),
        ),
        (
            "mTLS alias for every call",
            cells(|p| p.aliases_everywhere.map(|s| ("forced, `top_level` refused".into(), s))),
        ),
        (
            "`par.request_object`",
            cells(|p| {
                p.request_object.map(|r| match r.rule {
                    RequestObject::Required => ("JAR required".into(), r.source),
                    RequestObject::PlainByDefault => ("plain parameters by default".into(), r.source),
                })
            }),
        ),
        ("JARM", cells(|p| p.no_jarm.map(|s| ("refused".into(), s)))),
        (
            "Encrypted ID token",
            cells(|p| p.encrypted_id_token.map(|s| ("encryption key required".into(), s))),
        ),
        (
            "Egress `client_credentials`",
            cells(|p| {
                p.client_credentials
                    .map(|s| ("by default with app authentication".into(), s))
            }),
        ),
    ];
    let mut t = String::from("| Rule |");
    for p in PROFILES {
        t.push_str(&format!(" `{}` |", p.name));
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(PROFILES.len()));
    t.push('\n');
    for (rule, cells) in rows.drain(..) {
        t.push_str(&format!("| {rule} | {} |\n", cells.join(" | ")));
    }
    t.push('\n');
    for s in SOURCES {
        t.push_str(&format!("- **{}**: {}\n", s.short, s.cites));
    }
    t
}

fn cells(f: impl Fn(&Rules) -> Option<(String, &'static str)>) -> Vec<String> {
    PROFILES
        .iter()
        .map(|p| match f(p) {
            Some((what, source)) => format!("{what} ({source})"),
            None => "-".into(),
        })
        .collect()
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
