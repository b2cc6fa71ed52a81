//! Redundancy classes (Azure's names and promises, DESIGN.md section 2).
//!
//! A class is a local part (how the primary region keeps three copies: LRS or
//! ZRS) plus, for the geo classes, an asynchronous LRS copy in the paired region,
//! and for the RA classes, read access to that copy.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a tenant's objects are replicated. Chosen at tenant creation, convertible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Redundancy {
    /// Three copies on three distinct nodes of one facility: survives a node loss.
    Lrs,
    /// Three copies on three nodes in three different zones: survives a zone loss.
    Zrs,
    /// LRS, plus three copies in the paired region, shipped asynchronously.
    Grs,
    /// GRS whose secondary copy can be read (eventually consistent).
    RaGrs,
    /// ZRS, plus three copies (LRS) in the paired region, shipped asynchronously.
    Gzrs,
    /// GZRS whose secondary copy can be read (eventually consistent).
    RaGzrs,
}

impl Redundancy {
    /// Every class that exists, in display order.
    pub const ALL: [Redundancy; 6] = [
        Redundancy::Lrs,
        Redundancy::Zrs,
        Redundancy::Grs,
        Redundancy::RaGrs,
        Redundancy::Gzrs,
        Redundancy::RaGzrs,
    ];

    /// The lowercase name used in the CLI and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Redundancy::Lrs => "lrs",
            Redundancy::Zrs => "zrs",
            Redundancy::Grs => "grs",
            Redundancy::RaGrs => "ra-grs",
            Redundancy::Gzrs => "gzrs",
            Redundancy::RaGzrs => "ra-gzrs",
        }
    }

    /// The class of the primary region's replica group: LRS or ZRS.
    pub fn local(self) -> Redundancy {
        match self {
            Redundancy::Lrs | Redundancy::Grs | Redundancy::RaGrs => Redundancy::Lrs,
            Redundancy::Zrs | Redundancy::Gzrs | Redundancy::RaGzrs => Redundancy::Zrs,
        }
    }

    /// Whether the class keeps a copy in the paired region.
    pub fn is_geo(self) -> bool {
        !matches!(self, Redundancy::Lrs | Redundancy::Zrs)
    }

    /// Whether the secondary copy may be read.
    pub fn read_access(self) -> bool {
        matches!(self, Redundancy::RaGrs | Redundancy::RaGzrs)
    }

    /// The class with the given local part, geo copy and read access (read access
    /// needs a geo copy).
    pub fn compose(local: Redundancy, geo: bool, read_access: bool) -> Redundancy {
        match (local.local(), geo, read_access) {
            (Redundancy::Lrs, false, _) => Redundancy::Lrs,
            (Redundancy::Lrs, true, false) => Redundancy::Grs,
            (Redundancy::Lrs, true, true) => Redundancy::RaGrs,
            (_, false, _) => Redundancy::Zrs,
            (_, true, false) => Redundancy::Gzrs,
            (_, true, true) => Redundancy::RaGzrs,
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
#[error("unknown redundancy class {0:?}: expected one of lrs, zrs, grs, ra-grs, gzrs, ra-gzrs")]
pub struct UnknownRedundancy(pub String);

impl FromStr for Redundancy {
    type Err = UnknownRedundancy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase().replace('_', "-");
        Redundancy::ALL
            .into_iter()
            .find(|r| r.as_str() == lower || r.as_str().replace('-', "") == lower)
            .ok_or_else(|| UnknownRedundancy(s.to_string()))
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
        assert_eq!("RAGRS".parse::<Redundancy>(), Ok(Redundancy::RaGrs));
        assert_eq!("ra_gzrs".parse::<Redundancy>(), Ok(Redundancy::RaGzrs));
        assert!("grs-ish".parse::<Redundancy>().is_err());
    }

    #[test]
    fn classes_decompose_and_compose() {
        for r in Redundancy::ALL {
            assert_eq!(
                Redundancy::compose(r.local(), r.is_geo(), r.read_access()),
                r
            );
            assert!(!r.read_access() || r.is_geo(), "{r}");
            assert!(matches!(r.local(), Redundancy::Lrs | Redundancy::Zrs));
        }
        assert_eq!(
            Redundancy::compose(Redundancy::Zrs, false, true),
            Redundancy::Zrs
        );
    }
}
