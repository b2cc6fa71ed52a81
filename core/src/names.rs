//! Resource names and their rules (Azure's, which users already know).
//!
//! Every function returns a [`NameError`] whose message says what was wrong and what
//! a valid name looks like, so the node can pass it to the client unchanged.

use crate::limits::{CONTENT_TYPE_BYTES_MAX, METADATA_BYTES_MAX, OBJECT_KEY_BYTES_MAX};
use std::collections::BTreeMap;

/// A name or attribute that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct NameError {
    /// Which kind of name (tenant name, container name, ...).
    pub what: &'static str,
    /// The offending value, truncated to 80 characters.
    pub value: String,
    /// The rule it broke, phrased as what a valid value looks like.
    pub rule: String,
}

fn err(what: &'static str, value: &str, rule: impl Into<String>) -> NameError {
    NameError {
        what,
        value: value.chars().take(80).collect(),
        rule: rule.into(),
    }
}

/// Tenant (Azure: storage account) names: 3-24 lowercase letters and digits.
pub fn validate_tenant(name: &str) -> Result<(), NameError> {
    const RULE: &str = "tenant names are 3-24 characters of lowercase letters and digits";
    if !(3..=24).contains(&name.len()) {
        return Err(err("tenant name", name, RULE));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(err("tenant name", name, RULE));
    }
    Ok(())
}

/// Container names: 3-63 characters of lowercase letters, digits and single hyphens,
/// starting and ending with a letter or digit.
pub fn validate_container(name: &str) -> Result<(), NameError> {
    const RULE: &str = "container names are 3-63 characters of lowercase letters, digits and \
                        single hyphens, starting and ending with a letter or digit";
    let ok_len = (3..=63).contains(&name.len());
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    let ok_hyphens = !name.contains("--");
    if ok_len && ok_chars && ok_ends && ok_hyphens {
        Ok(())
    } else {
        Err(err("container name", name, RULE))
    }
}

/// Object keys: 1-1024 bytes of UTF-8 without control characters.
pub fn validate_key(key: &str) -> Result<(), NameError> {
    if key.is_empty() || key.len() > OBJECT_KEY_BYTES_MAX {
        return Err(err(
            "object key",
            key,
            format!("object keys are 1-{OBJECT_KEY_BYTES_MAX} bytes of UTF-8"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(err(
            "object key",
            key,
            "object keys must not contain control characters",
        ));
    }
    Ok(())
}

/// Content types: at most 256 bytes of printable ASCII.
pub fn validate_content_type(value: &str) -> Result<(), NameError> {
    if value.len() > CONTENT_TYPE_BYTES_MAX || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(err(
            "content type",
            value,
            format!("content types are at most {CONTENT_TYPE_BYTES_MAX} bytes of printable ASCII"),
        ));
    }
    Ok(())
}

/// User metadata: names are identifiers (`[A-Za-z_][A-Za-z0-9_]*`), values printable
/// ASCII, and names plus values total at most 8 KiB.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Result<(), NameError> {
    let mut total = 0usize;
    for (name, value) in metadata {
        let mut chars = name.chars();
        let ok_first = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(
                "metadata name",
                name,
                "metadata names start with a letter or underscore and hold letters, digits and underscores",
            ));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(err(
                "metadata value",
                value,
                "metadata values are printable ASCII",
            ));
        }
        total += name.len() + value.len();
    }
    if total > METADATA_BYTES_MAX {
        return Err(err(
            "metadata",
            &format!("{total} bytes"),
            format!("names and values together are at most {METADATA_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for ok in ["abc", "tenant1", "a1b2c3d4e5f6g7h8i9j0klmn"] {
            assert_eq!(validate_tenant(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            "Tenant",
            "ten-ant",
            "ten_ant",
            "a1b2c3d4e5f6g7h8i9j0klmno",
            "",
        ] {
            let e = validate_tenant(bad).unwrap_err();
            assert!(e.to_string().contains("3-24"), "{e}");
        }
    }

    #[test]
    fn container_names() {
        for ok in ["abc", "my-container", "a-b-c", "x1y"] {
            assert_eq!(validate_container(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(64);
        for bad in ["ab", "-abc", "abc-", "a--b", "ABC", "a_b", long.as_str()] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_and_metadata() {
        assert!(validate_key("dir/file.txt").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\nb").is_err());
        assert!(validate_key(&"k".repeat(1025)).is_err());
        let mut m = BTreeMap::new();
        m.insert("owner_1".to_string(), "alice".to_string());
        assert!(validate_metadata(&m).is_ok());
        m.insert("1bad".to_string(), "x".to_string());
        assert!(validate_metadata(&m).is_err());
        let mut big = BTreeMap::new();
        big.insert("big".to_string(), "v".repeat(METADATA_BYTES_MAX));
        let e = validate_metadata(&big).unwrap_err();
        assert!(e.to_string().contains("8192"), "{e}");
    }
}
