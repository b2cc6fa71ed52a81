//! Redundancy classes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a tenant's objects are replicated. Chosen at tenant creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Redundancy {
    /// Three copies on three distinct nodes of one facility: survives a node loss.
    Lrs,
    /// Three copies on three nodes in three different zones: survives a zone loss.
    Zrs,
}

impl Redundancy {
    /// Every class that exists, in display order.
    pub const ALL: [Redundancy; 2] = [Redundancy::Lrs, Redundancy::Zrs];

    /// The lowercase name used in the CLI and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Redundancy::Lrs => "lrs",
            Redundancy::Zrs => "zrs",
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

/// A redundancy name that is not one of the known classes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown redundancy class {0:?}: expected one of lrs, zrs")]
pub struct UnknownRedundancy(pub String);

impl FromStr for Redundancy {
    type Err = UnknownRedundancy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lrs" => Ok(Redundancy::Lrs),
            "zrs" => Ok(Redundancy::Zrs),
            _ => Err(UnknownRedundancy(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_round_trips() {
        for r in Redundancy::ALL {
            assert_eq!(r.as_str().parse::<Redundancy>(), Ok(r));
            assert_eq!(r.to_string().parse::<Redundancy>(), Ok(r));
        }
        assert!("grs-ish".parse::<Redundancy>().is_err());
    }
}
