//! Tokens in the wrong place (issue 19 item 3). node-oauth (under passport-oauth2) GETs
//! userinfo with `?access_token=`, and RFC 6750 §2.2/§2.3 allows a form body or the query;
//! a token in a URL lands in the AS's access logs and a FAPI AS refuses it. The access token
//! of a userinfo or resource call is moved into the `Authorization` header (turned into a
//! DPoP proof later where that AS binds tokens) before the call leaves the pod. Two tokens
//! in one request are a 400 (RFC 6750 §2: exactly one method).

use bytes::Bytes;

use crate::protocol::secret::Secret;

/// A userinfo or resource call with its access token where it belongs.
#[derive(Debug, PartialEq, Eq)]
pub struct Lifted {
    /// The query to send (without `access_token`), `None` when none is left.
    pub query: Option<String>,
    /// The body to send (a form body without `access_token`).
    pub body: Bytes,
    /// The token taken from the query or body, to send as `Authorization: Bearer`.
    pub token: Option<Secret>,
}

fn is_form(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|c| {
        let c = c.to_ascii_lowercase();
        c.split(|b| *b == b';')
            .next()
            .is_some_and(|m| m.trim_ascii() == b"application/x-www-form-urlencoded")
    })
}

/// Removes every `access_token` parameter from an urlencoded string; returns what is left
/// (byte-identical otherwise) and the tokens found.
fn take_tokens(raw: &str) -> (String, Vec<String>) {
    let mut kept: Vec<&str> = Vec::new();
    let mut tokens = Vec::new();
    for seg in raw.split('&') {
        let name = seg.split('=').next().unwrap_or("");
        let decoded: String = url::form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        if decoded == "access_token" {
            let value = url::form_urlencoded::parse(seg.as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            tokens.push(value);
        } else if !seg.is_empty() {
            kept.push(seg);
        }
    }
    (kept.join("&"), tokens)
}

/// Lifts an access token out of the query or a form body. `has_authorization`: the app also
/// sent an `Authorization` header.
pub fn lift(
    query: Option<&str>,
    has_authorization: bool,
    content_type: Option<&[u8]>,
    body: &Bytes,
) -> Result<Lifted, String> {
    let (query, mut tokens) = match query {
        Some(q) => {
            let (rest, t) = take_tokens(q);
            ((!rest.is_empty()).then_some(rest), t)
        }
        None => (None, Vec::new()),
    };
    let mut out_body = body.clone();
    if is_form(content_type) && !body.is_empty() {
        let text = std::str::from_utf8(body).map_err(|_| "a form body that is not UTF-8".to_string())?;
        let (rest, t) = take_tokens(text);
        if !t.is_empty() {
            out_body = Bytes::from(rest);
            tokens.extend(t);
        }
    }
    match (tokens.len(), has_authorization) {
        (0, _) => Ok(Lifted {
            query,
            body: out_body,
            token: None,
        }),
        (1, false) if !tokens[0].is_empty() => Ok(Lifted {
            query,
            body: out_body,
            token: tokens.pop().map(Secret::new),
        }),
        (1, false) => Err("an empty access_token parameter".into()),
        _ => Err("more than one access token in the request (RFC 6750 §2: use exactly one method)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded; charset=utf-8");

    #[test]
    fn a_query_token_moves_to_the_header() {
        let l = lift(Some("access_token=abc%2Bd&schema=openid"), false, None, &Bytes::new()).unwrap();
        assert_eq!(l.token.as_ref().map(Secret::expose), Some("abc+d"));
        assert_eq!(l.query.as_deref(), Some("schema=openid"));
        let l = lift(Some("access_token=abc"), false, None, &Bytes::new()).unwrap();
        assert_eq!((l.query, l.token.as_ref().map(Secret::expose)), (None, Some("abc")));
        // Encoded names are the same parameter.
        let l = lift(Some("access%5Ftoken=abc"), false, None, &Bytes::new()).unwrap();
        assert_eq!(l.token.as_ref().map(Secret::expose), Some("abc"));
    }

    #[test]
    fn a_form_body_token_moves_to_the_header() {
        let l = lift(None, false, FORM, &Bytes::from_static(b"access_token=t1&x=1")).unwrap();
        assert_eq!(l.token.as_ref().map(Secret::expose), Some("t1"));
        assert_eq!(&l.body[..], b"x=1");
        // Not a form: the body is the app's own (a resource API's JSON), untouched.
        let json = Bytes::from_static(br#"{"access_token":"x"}"#);
        let l = lift(None, false, Some(b"application/json"), &json).unwrap();
        assert_eq!((l.token, l.body), (None, json));
    }

    #[test]
    fn two_tokens_are_refused() {
        assert!(lift(Some("access_token=a"), true, None, &Bytes::new()).is_err());
        assert!(lift(Some("access_token=a&access_token=b"), false, None, &Bytes::new()).is_err());
        assert!(lift(
            Some("access_token=a"),
            false,
            FORM,
            &Bytes::from_static(b"access_token=b")
        )
        .is_err());
        assert!(lift(Some("access_token="), false, None, &Bytes::new()).is_err());
    }

    #[test]
    fn other_requests_are_unchanged() {
        let l = lift(Some("a=1&b=%20"), true, None, &Bytes::from_static(b"x")).unwrap();
        assert_eq!(l.query.as_deref(), Some("a=1&b=%20"));
        assert_eq!((&l.body[..], l.token), (&b"x"[..], None));
        assert_eq!(lift(None, false, None, &Bytes::new()).unwrap().query, None);
    }
}
