//! Tenants: the unit of isolation. Nothing of one tenant is ever visible to another.

use crate::{Error, Result};
use std::fmt;

/// A validated tenant name: 1-64 characters of ASCII letters, digits, `-`, `_` and `.`
/// (not starting with `.`), so it is safe in paths, URLs and object-store keys.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Tenant(String);

impl Tenant {
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 64 || name.starts_with('.') || !name.chars().all(ok_char)
        {
            return Err(Error::invalid(format!(
                "invalid tenant name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
            )));
        }
        Ok(Tenant(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant("default".to_owned())
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Tenant {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Tenant::new(s)
    }
}

impl From<Tenant> for String {
    fn from(t: Tenant) -> String {
        t.0
    }
}

impl std::str::FromStr for Tenant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Tenant::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_rejects_path_tricks() {
        assert!(Tenant::new("alice_01").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "sp ace", &"x".repeat(65)] {
            assert!(Tenant::new(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
