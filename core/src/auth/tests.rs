use super::token::{self, Claims, TokenError};
use super::*;
use zeroize::Zeroizing;

fn key(b: u8) -> SecretKey {
    SecretKey::from_array(Zeroizing::new([b; 32]))
}

fn claims() -> Claims {
    Claims {
        id: 0x1234,
        key_version: 2,
        scope: Scope {
            tenant: "acme".into(),
            container: Some("logs".into()),
            prefix: Some("2026/".into()),
        },
        permissions: Role::Reader.permissions(),
        principal: Some("alice".into()),
        start_ms: 1_000_000,
        expiry_ms: 2_000_000,
    }
}

#[test]
fn a_signed_token_verifies_and_round_trips_its_claims() {
    let t = token::sign(&claims(), &key(7));
    assert!(t.starts_with("st1."));
    assert_eq!(token::key_version_of(&t).unwrap(), 2);
    let back = token::verify(&t, Some(&key(7)), 1_500_000, 0).unwrap();
    assert_eq!(back, claims());
}

#[test]
fn every_flipped_character_is_rejected() {
    let t = token::sign(&claims(), &key(7));
    for i in 4..t.len() {
        let mut bytes = t.clone().into_bytes();
        bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(bytes).unwrap();
        if tampered == t {
            continue;
        }
        let r = token::verify(&tampered, Some(&key(7)), 1_500_000, 0);
        assert!(
            matches!(
                r,
                Err(TokenError::BadSignature) | Err(TokenError::Malformed(_))
            ),
            "position {i}: {r:?}"
        );
    }
}

#[test]
fn another_key_a_missing_key_and_garbage_are_rejected() {
    let t = token::sign(&claims(), &key(7));
    assert_eq!(
        token::verify(&t, Some(&key(8)), 1_500_000, 0),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        token::verify(&t, None, 1_500_000, 0),
        Err(TokenError::UnknownKey { version: 2 })
    );
    for bad in [
        "",
        "st1.",
        "st1.zz.zz",
        "sop1.00",
        "st1.00.00",
        &t[..t.len() - 2],
    ] {
        assert!(
            matches!(
                token::verify(bad, Some(&key(7)), 1_500_000, 0),
                Err(TokenError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_validity_window_has_a_bounded_skew_allowance() {
    let t = token::sign(&claims(), &key(7));
    let k = Some(key(7));
    // Not yet valid, unless within the skew.
    assert!(matches!(
        token::verify(&t, k.as_ref(), 999_000, 0),
        Err(TokenError::NotYetValid { .. })
    ));
    assert!(token::verify(&t, k.as_ref(), 999_000, 1_000).is_ok());
    assert!(matches!(
        token::verify(&t, k.as_ref(), 998_999, 1_000),
        Err(TokenError::NotYetValid { .. })
    ));
    // Expired, unless within the skew.
    assert!(matches!(
        token::verify(&t, k.as_ref(), 2_000_000, 0),
        Err(TokenError::Expired { .. })
    ));
    assert!(token::verify(&t, k.as_ref(), 2_000_999, 1_000).is_ok());
    assert!(matches!(
        token::verify(&t, k.as_ref(), 2_001_000, 1_000),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn messages_never_echo_the_token() {
    let t = token::sign(&claims(), &key(7));
    let mac = t.rsplit('.').next().unwrap().to_string();
    for e in [
        token::verify(&t, Some(&key(8)), 1_500_000, 0).unwrap_err(),
        token::verify(&t, Some(&key(7)), 9_000_000, 0).unwrap_err(),
        token::verify(&t[..t.len() - 1], Some(&key(7)), 1_500_000, 0).unwrap_err(),
    ] {
        let m = e.to_string();
        assert!(!m.contains(&mac) && !m.contains(&t[4..40]), "{m}");
    }
}

#[test]
fn roles_nest() {
    let (r, c, o) = (
        Role::Reader.permissions(),
        Role::Contributor.permissions(),
        Role::Owner.permissions(),
    );
    assert!(c.contains(r) && o.contains(c));
    assert!(!r.contains(Permissions::WRITE) && !r.contains(Permissions::DELETE));
    assert!(!c.contains(Permissions::MANAGE));
    assert_eq!(r.letters(), "rl");
    assert_eq!(o.letters(), "rlwdm");
    assert_eq!(Role::parse("Contributor"), Ok(Role::Contributor));
    assert!(Role::parse("admin").unwrap_err().contains("reader"));
}

#[test]
fn scopes_cover_what_they_enclose_only() {
    let tenant = Scope {
        tenant: "acme".into(),
        container: None,
        prefix: None,
    };
    let container = Scope {
        container: Some("logs".into()),
        ..tenant.clone()
    };
    let prefix = Scope {
        prefix: Some("a/".into()),
        ..container.clone()
    };
    use Resource as R;
    let cases: &[(&Scope, R<'_>, bool)] = &[
        (&tenant, R::Tenant("acme"), true),
        (&tenant, R::Tenant("other"), false),
        (&tenant, R::Object("other", "logs", "k"), false),
        (&tenant, R::Container("acme", "x"), true),
        (&container, R::Tenant("acme"), false),
        (&container, R::Container("acme", "logs"), true),
        (&container, R::Container("acme", "logs2"), false),
        (&container, R::Object("acme", "logs", "k"), true),
        (&container, R::Object("acme", "img", "k"), false),
        (&prefix, R::Object("acme", "logs", "a/b"), true),
        (&prefix, R::Object("acme", "logs", "b/a"), false),
        (&prefix, R::Listing("acme", "logs", "a/"), true),
        (&prefix, R::Listing("acme", "logs", ""), false),
        (&prefix, R::Container("acme", "logs"), false),
    ];
    for (scope, resource, want) in cases {
        assert_eq!(scope.covers(resource), *want, "{scope:?} {resource}");
    }
    assert!(tenant.encloses(&prefix) && container.encloses(&prefix));
    assert!(!prefix.encloses(&container) && !container.encloses(&tenant));
}

#[test]
fn grants_apply_at_their_scope() {
    let grants = vec![
        RoleGrant {
            principal: "bob".into(),
            role: Role::Reader,
            container: None,
        },
        RoleGrant {
            principal: "bob".into(),
            role: Role::Contributor,
            container: Some("logs".into()),
        },
    ];
    let obj = Resource::Object("acme", "logs", "k");
    assert_eq!(
        granted(&grants, "bob", &obj),
        Role::Contributor.permissions()
    );
    assert_eq!(
        granted(&grants, "bob", &Resource::Object("acme", "img", "k")),
        Role::Reader.permissions()
    );
    assert_eq!(
        granted(&grants, "bob", &Resource::Tenant("acme")),
        Role::Reader.permissions()
    );
    assert!(granted(&grants, "eve", &obj).is_empty());
}

#[test]
fn credentials_compare_and_parse() {
    let secret = operator_secret_from(&[9; 32]);
    assert_eq!(
        parse_operator_secret(&format!(" {secret}\n")).unwrap(),
        secret
    );
    assert!(parse_operator_secret("sop1.abc").is_err());
    assert!(parse_operator_secret("hello").is_err());
    let hash = crate::crypto::sha256(secret.as_bytes());
    assert!(operator_secret_ok(&secret, &hash));
    assert!(!operator_secret_ok(&operator_secret_from(&[8; 32]), &hash));
    let c = cluster_credential(&key(1));
    assert!(c.starts_with(CLUSTER_PREFIX));
    assert!(credential_eq(&c, &cluster_credential(&key(1))));
    assert!(!credential_eq(&c, &cluster_credential(&key(2))));
    assert!(validate_principal("alice@example.com").is_ok());
    assert!(validate_principal("Alice").is_err());
    assert!(validate_principal("").is_err());
}
