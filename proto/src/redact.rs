//! `Debug` for the messages that carry key material: every field but the key is
//! shown; the key appears only as whether it is present.

use crate::v1;
use std::fmt;

fn key_field(key: &Option<prost::bytes::Bytes>) -> &'static str {
    match key {
        Some(_) => "Some(<redacted>)",
        None => "None",
    }
}

impl fmt::Debug for v1::PutHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutHeader")
            .field("tenant", &self.tenant)
            .field("container", &self.container)
            .field("key", &self.key)
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field("if_match", &self.if_match)
            .field("if_none_match", &self.if_none_match)
            .field("size_hint", &self.size_hint)
            .field(
                "encryption_key",
                &format_args!("{}", key_field(&self.encryption_key)),
            )
            .finish()
    }
}

impl fmt::Debug for v1::GetRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetRequest")
            .field("tenant", &self.tenant)
            .field("container", &self.container)
            .field("key", &self.key)
            .field("offset", &self.offset)
            .field("length", &self.length)
            .field("consistency", &self.consistency)
            .field(
                "encryption_key",
                &format_args!("{}", key_field(&self.encryption_key)),
            )
            .finish()
    }
}

impl fmt::Debug for v1::ImportKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportKeyRequest")
            .field("tenant", &self.tenant)
            .field(
                "key_material",
                &format_args!("<{} bytes redacted>", self.key_material.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_never_appear_in_debug() {
        let key = prost::bytes::Bytes::from_static(&[0x5a; 32]);
        let header = v1::PutHeader {
            tenant: "acme".into(),
            encryption_key: Some(key.clone()),
            ..Default::default()
        };
        let get = v1::GetRequest {
            encryption_key: Some(key.clone()),
            ..Default::default()
        };
        let import = v1::ImportKeyRequest {
            tenant: "acme".into(),
            key_material: key,
        };
        let put = v1::PutRequest {
            part: Some(v1::put_request::Part::Header(header.clone())),
        };
        for text in [
            format!("{header:?}"),
            format!("{get:?}"),
            format!("{import:?}"),
            format!("{put:?}"),
        ] {
            assert!(text.contains("redacted"), "{text}");
            assert!(
                !text.contains("90") && !text.contains("5a") && !text.contains("Z"),
                "{text}"
            );
        }
    }
}

impl fmt::Debug for v1::CreateTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token", &format_args!("<redacted>"))
            .field("info", &self.info)
            .finish()
    }
}
