//! The position of an AS in `authorization_servers`, typed so it is not mixed up with the
//! other indices and counts next to it (a resource route's index, a list length).

use std::fmt;

/// Which configured AS: its position in `authorization_servers` and in the registry. Held
/// in memory only: the sealed state names the AS by its configured name, never by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsIndex(usize);

impl AsIndex {
    pub const fn new(i: usize) -> AsIndex {
        AsIndex(i)
    }

    /// The position, to index a list of the configured ASs.
    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for AsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_as_the_bare_position() {
        let i = AsIndex::new(3);
        assert_eq!(
            (i.to_string(), format!("{i:?}"), i.get()),
            ("3".into(), "AsIndex(3)".into(), 3)
        );
    }
}
