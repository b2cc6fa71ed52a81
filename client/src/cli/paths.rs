//! Parsing of `TENANT/CONTAINER/KEY` paths and byte ranges, with the naming rule in
//! every error so the user can fix the input without reading docs.

use std::fmt;
use stratus_core::names;

/// `TENANT/CONTAINER/KEY`; the key may contain slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub tenant: String,
    pub container: String,
    pub key: String,
}

/// `TENANT/CONTAINER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPath {
    pub tenant: String,
    pub container: String,
}

/// `TENANT/CONTAINER[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPath {
    pub tenant: String,
    pub container: String,
    pub prefix: String,
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.container, self.key)
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.container)
    }
}

fn check_names(tenant: &str, container: &str) -> Result<(), String> {
    names::validate_tenant(tenant).map_err(|e| e.to_string())?;
    names::validate_container(container).map_err(|e| e.to_string())
}

/// Splits `TENANT/CONTAINER` off the front; returns the rest after the next slash.
fn split_front<'a>(
    s: &'a str,
    expected: &str,
) -> Result<(&'a str, &'a str, Option<&'a str>), String> {
    let mut parts = s.splitn(3, '/');
    let tenant = parts.next().unwrap_or_default();
    let Some(container) = parts.next() else {
        return Err(format!("{s:?} has no container: expected {expected}"));
    };
    Ok((tenant, container, parts.next()))
}

/// Parses `TENANT/CONTAINER/KEY`.
pub fn parse_object_path(s: &str) -> Result<ObjectPath, String> {
    const EXPECTED: &str = "TENANT/CONTAINER/KEY";
    let (tenant, container, key) = split_front(s, EXPECTED)?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("{s:?} has no object key: expected {EXPECTED}"))?;
    check_names(tenant, container)?;
    names::validate_key(key).map_err(|e| e.to_string())?;
    Ok(ObjectPath {
        tenant: tenant.to_owned(),
        container: container.to_owned(),
        key: key.to_owned(),
    })
}

/// Parses `TENANT/CONTAINER` (a trailing slash is accepted).
pub fn parse_container_path(s: &str) -> Result<ContainerPath, String> {
    const EXPECTED: &str = "TENANT/CONTAINER";
    let (tenant, container, rest) = split_front(s, EXPECTED)?;
    if rest.is_some_and(|r| !r.is_empty()) {
        return Err(format!(
            "{s:?} has more than a container: expected {EXPECTED}"
        ));
    }
    check_names(tenant, container)?;
    Ok(ContainerPath {
        tenant: tenant.to_owned(),
        container: container.to_owned(),
    })
}

/// Parses `TENANT/CONTAINER[/PREFIX]`.
pub fn parse_list_path(s: &str) -> Result<ListPath, String> {
    let (tenant, container, prefix) = split_front(s, "TENANT/CONTAINER[/PREFIX]")?;
    check_names(tenant, container)?;
    Ok(ListPath {
        tenant: tenant.to_owned(),
        container: container.to_owned(),
        prefix: prefix.unwrap_or_default().to_owned(),
    })
}

/// Parses an HTTP-style inclusive byte range, `START-END` or `START-` (an optional
/// `bytes=` prefix is accepted), into `(offset, length)`.
pub fn parse_range(s: &str) -> Result<(u64, Option<u64>), String> {
    let spec = s.trim().strip_prefix("bytes=").unwrap_or(s.trim());
    let Some((start, end)) = spec.split_once('-') else {
        return Err(format!(
            "range {s:?} must be START-END or START- (bytes, END inclusive)"
        ));
    };
    if start.is_empty() {
        return Err(format!(
            "range {s:?}: suffix ranges (-N) are not supported; use START-END or START-"
        ));
    }
    let num = |v: &str, what: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("range {s:?}: {what} {v:?} is not a byte offset"))
    };
    let start = num(start, "start")?;
    if end.is_empty() {
        return Ok((start, None));
    }
    let end = num(end, "end")?;
    if end < start {
        return Err(format!("range {s:?}: end {end} is before start {start}"));
    }
    Ok((start, Some(end - start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_keep_slashes_in_keys() {
        let p = parse_object_path("acme/photos/2024/06/cat.jpg").expect("valid");
        assert_eq!(
            p,
            ObjectPath {
                tenant: "acme".into(),
                container: "photos".into(),
                key: "2024/06/cat.jpg".into()
            }
        );
        assert_eq!(p.to_string(), "acme/photos/2024/06/cat.jpg");
        let p = parse_object_path("acme/photos/dir/").expect("trailing slash is part of the key");
        assert_eq!(p.key, "dir/");
    }

    #[test]
    fn object_path_errors_name_the_problem_and_the_rule() {
        let cases = [
            ("acme", "no container"),
            ("acme/photos", "no object key"),
            ("acme/photos/", "no object key"),
            ("Acme/photos/k", "3-24 characters"),
            ("acme/Photos/k", "container names are 3-63"),
            ("acme/ph--otos/k", "single"),
            ("/acme/photos/k", "tenant name"),
        ];
        for (input, expected) in cases {
            let e = parse_object_path(input).expect_err(input);
            assert!(e.contains(expected), "{input}: {e}");
        }
    }

    #[test]
    fn container_and_list_paths() {
        let c = parse_container_path("acme/photos/").expect("trailing slash ok");
        assert_eq!(c.to_string(), "acme/photos");
        assert!(parse_container_path("acme/photos/x").is_err());
        assert!(parse_container_path("acme").is_err());

        let l = parse_list_path("acme/photos").expect("no prefix");
        assert_eq!(l.prefix, "");
        let l = parse_list_path("acme/photos/2024/").expect("prefix");
        assert_eq!((l.tenant.as_str(), l.prefix.as_str()), ("acme", "2024/"));
    }

    #[test]
    fn ranges_are_inclusive_like_http() {
        assert_eq!(parse_range("0-99"), Ok((0, Some(100))));
        assert_eq!(parse_range("bytes=10-10"), Ok((10, Some(1))));
        assert_eq!(parse_range("1024-"), Ok((1024, None)));
        for (bad, why) in [
            ("-100", "suffix"),
            ("10-5", "before start"),
            ("abc", "START-END"),
            ("x-5", "not a byte offset"),
            ("5-y", "not a byte offset"),
        ] {
            let e = parse_range(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
