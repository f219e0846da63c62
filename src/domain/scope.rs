//! `Scope`: a set of scope tokens (RFC 6749 §3.3), kept sorted and unique.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, thiserror::Error)]
#[error("invalid scope token `{0}`")]
pub struct InvalidScope(pub String);

impl Scope {
    /// Parses a space-delimited list; each token must be `1*NQCHAR`.
    pub fn parse(text: &str) -> Result<Scope, InvalidScope> {
        let mut set = BTreeSet::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !ok {
                return Err(InvalidScope(token.to_string()));
            }
            set.insert(token.to_string());
        }
        Ok(Scope(set))
    }

    pub fn from_tokens<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Scope {
        Scope(tokens.into_iter().map(Into::into).collect())
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every token of either scope.
    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Tokens of `self` that `allowed` does not have.
    pub fn excess<'a>(&'a self, allowed: &'a Scope) -> impl Iterator<Item = &'a str> + 'a {
        self.0.difference(&allowed.0).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sorts_and_dedups() {
        let s = Scope::parse("profile openid  profile").unwrap();
        assert_eq!(s.to_string(), "openid profile");
    }

    #[test]
    fn refuses_quotes_and_backslashes() {
        assert!(Scope::parse("open\"id").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(Scope::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn subset_and_excess() {
        let allowed = Scope::parse("openid profile").unwrap();
        let asked = Scope::parse("openid email").unwrap();
        assert!(!asked.is_subset(&allowed));
        assert_eq!(asked.excess(&allowed).collect::<Vec<_>>(), vec!["email"]);
    }
}
