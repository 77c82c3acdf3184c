//! Where a dotted key path (`authorization_servers[1].client.auth_method`) is in the YAML
//! text, so validation problems carry a line like serde_yaml's parse errors do.
//!
//! An indentation index, not a YAML parser: it knows block mappings, block sequences
//! (`- item`, also at the parent's indentation) and one-line flow collections
//! (`{ a: 1 }`, `[a, b]`), which is what config files use. A key it cannot find falls
//! back to the nearest enclosing key it did find; a wrong line is never worse than none,
//! and the key path is printed either way.

use std::collections::HashMap;

/// Key path -> 1-based line of its first occurrence.
pub struct KeyLines(HashMap<String, usize>);

/// One open block on the way down: its indentation and its path.
struct Open {
    indent: usize,
    path: String,
    /// A sequence item (`- `) rather than a mapping key.
    item: bool,
}

impl KeyLines {
    pub fn index(text: &str) -> KeyLines {
        let mut lines = HashMap::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut items: HashMap<String, usize> = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = &raw[..super::env::comment_start(raw)];
            let content = line.trim_start();
            if content.is_empty() || content.starts_with("---") || content.starts_with("...") {
                continue;
            }
            let mut indent = line.len() - content.len();
            let mut content = content.trim_end();
            if let Some(rest) = content.strip_prefix('-').filter(|r| r.is_empty() || r.starts_with(' ')) {
                while stack
                    .last()
                    .is_some_and(|o| o.indent > indent || (o.indent == indent && o.item))
                {
                    stack.pop();
                }
                let parent = stack.last().map_or(String::new(), |o| o.path.clone());
                let i = items.entry(parent.clone()).or_insert(0);
                let path = format!("{parent}[{i}]");
                *i += 1;
                lines.entry(path.clone()).or_insert(n + 1);
                stack.push(Open {
                    indent,
                    path,
                    item: true,
                });
                let rest_trimmed = rest.trim_start();
                indent += 1 + (rest.len() - rest_trimmed.len());
                content = rest_trimmed;
                if content.is_empty() {
                    continue;
                }
            }
            while stack.last().is_some_and(|o| o.indent >= indent) {
                stack.pop();
            }
            let parent = stack.last().map_or(String::new(), |o| o.path.clone());
            let Some((key, value)) = split_key(content) else {
                flow(&parent, content, n + 1, &mut lines);
                continue;
            };
            let path = join(&parent, key);
            lines.entry(path.clone()).or_insert(n + 1);
            flow(&path, value, n + 1, &mut lines);
            stack.push(Open {
                indent,
                path,
                item: false,
            });
        }
        KeyLines(lines)
    }

    /// The line of `key`, else of the nearest enclosing key present.
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(l) = self.0.get(key) {
                return Some(*l);
            }
            key = &key[..key.rfind(['.', '['])?];
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `key: value` or `key:` outside quotes and brackets; the key unquoted.
fn split_key(s: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            (None, ':') if depth == 0 => {
                let rest = &s[i + 1..];
                if rest.is_empty() || rest.starts_with(' ') {
                    let key = s[..i].trim().trim_matches(|c| c == '"' || c == '\'');
                    return (!key.is_empty()).then_some((key, rest.trim()));
                }
            }
            _ => {}
        }
    }
    None
}

/// The keys (`{ a: .. }`) or items (`[ .. ]`) of a one-line flow collection, all on `line`.
fn flow(path: &str, value: &str, line: usize, lines: &mut HashMap<String, usize>) {
    let (items, is_map) = match (value.strip_prefix('{'), value.strip_prefix('[')) {
        (Some(v), _) => (v.strip_suffix('}'), true),
        (_, Some(v)) => (v.strip_suffix(']'), false),
        _ => return,
    };
    let Some(items) = items else { return };
    for (i, item) in split_top(items).into_iter().enumerate() {
        let item = item.trim();
        if is_map {
            if let Some((key, v)) = split_key(item) {
                let p = join(path, key);
                lines.entry(p.clone()).or_insert(line);
                flow(&p, v, line, lines);
            }
        } else {
            let p = format!("{path}[{i}]");
            lines.entry(p.clone()).or_insert(line);
            flow(&p, item, line, lines);
        }
    }
}

/// Splits at the commas that are not inside quotes or nested brackets.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quote) = (Vec::new(), 0, 0usize, None);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::KeyLines;

    const TEXT: &str = r#"# comment
listen: { public: "127.0.0.1:8080", admin: "127.0.0.1:9090" }
upstream: "127.0.0.1:3000"   # the app
client:
  client_id: tpp
  signing_key: { path: keys/sign.pem, alg: PS256 }
authorization_servers:
  - name: bank-a
    issuer: https://a.example.com
    client: { client_id: tpp-at-a }
  -
    name: bank-b
    client:
      auth_method: tls_client_auth
egress:
  allowed_grant_types: [authorization_code, "a, b"]
  resources:
  - prefix: /rs/a/
    target: "https://rs.example.com/"
  - { prefix: /rs/b/, target: "https://rs.b.example.com/" }
"#;

    #[test]
    fn block_flow_and_sequence_keys_have_their_lines() {
        let k = KeyLines::index(TEXT);
        for (key, line) in [
            ("listen.admin", 2),
            ("upstream", 3),
            ("client.client_id", 5),
            ("client.signing_key.alg", 6),
            ("authorization_servers[0].name", 8),
            ("authorization_servers[0].issuer", 9),
            ("authorization_servers[0].client.client_id", 10),
            ("authorization_servers[1]", 11),
            ("authorization_servers[1].name", 12),
            ("authorization_servers[1].client.auth_method", 14),
            ("egress.allowed_grant_types[1]", 16),
            ("egress.resources[0].target", 19),
            ("egress.resources[1].target", 20),
        ] {
            assert_eq!(k.line(key), Some(line), "{key}");
        }
    }

    #[test]
    fn a_key_not_in_the_file_points_at_its_nearest_parent() {
        let k = KeyLines::index(TEXT);
        // Merged from the shared block: reported at the per-AS block.
        assert_eq!(k.line("authorization_servers[0].client.signing_keys[0].alg"), Some(10));
        assert_eq!(k.line("authorization_servers[1].client.transport"), Some(13));
        assert_eq!(k.line("logging.format"), None);
    }
}
