//! `par.login_paths` and `client.allowed_authorize_parameters`: the login guard's lists,
//! checked when the file loads (`front::login_guard` applies them).

/// `par.login_paths`: absolute paths, as the app routes them.
pub fn login_paths(paths: Vec<String>) -> Result<Vec<String>, String> {
    match paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains(['?', '#']) || p.chars().any(|c| c.is_control()))
    {
        Some(bad) => Err(format!("`{bad}` is not an absolute path without query (e.g. /login)")),
        None => Ok(paths),
    }
}

/// Parameter names: visible ASCII, no `=`/`&`; the PAR/JAR plumbing the sidecar owns
/// cannot be allowed (the parser refuses it anyway).
pub fn authorize_parameter_names(names: &[String]) -> Result<Vec<String>, String> {
    for n in names {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b'&') {
            return Err(format!("`{n}` is not a parameter name"));
        }
        if matches!(n.as_str(), "request" | "request_uri" | "client_assertion") {
            return Err(format!("`{n}` is set by the sidecar, never by the app"));
        }
    }
    Ok(names.to_vec())
}
