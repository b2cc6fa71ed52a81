use super::envelope::{chunk_nonce, sealed_len, ContentCipher};
use super::*;

fn key(byte: u8) -> SecretKey {
    SecretKey::from_slice(&[byte; KEY_BYTES]).unwrap()
}

#[test]
fn wrap_round_trips_and_binds_its_associated_data() {
    let root = key(1);
    let kek = key(2);
    let wrapped = wrap(&root, &kek, &kek_aad("acme", 1), [7; NONCE_BYTES]);
    let back = unwrap(&root, &wrapped, &kek_aad("acme", 1), "kek").unwrap();
    assert_eq!(back.expose(), kek.expose());
    // Another tenant, another version, another wrapping key: all refused.
    for (wrapping, aad) in [
        (&root, kek_aad("other", 1)),
        (&root, kek_aad("acme", 2)),
        (&key(9), kek_aad("acme", 1)),
    ] {
        let e = unwrap(wrapping, &wrapped, &aad, "KEK 1 of acme").unwrap_err();
        assert_eq!(
            e,
            CryptoError::Unwrap {
                what: "KEK 1 of acme".into()
            }
        );
    }
    let mut tampered = wrapped.clone();
    tampered.sealed[3] ^= 1;
    assert!(unwrap(&root, &tampered, &kek_aad("acme", 1), "kek").is_err());
}

#[test]
fn dek_moved_to_another_object_or_tenant_fails() {
    let kek = key(3);
    let dek = key(4);
    let aad = dek_aad("acme", "photos", "a.jpg", 42);
    let wrapped = wrap(&kek, &dek, &aad, [1; NONCE_BYTES]);
    assert!(unwrap(&kek, &wrapped, &aad, "dek").is_ok());
    for other in [
        dek_aad("evil", "photos", "a.jpg", 42),
        dek_aad("acme", "other", "a.jpg", 42),
        dek_aad("acme", "photos", "b.jpg", 42),
        dek_aad("acme", "photos", "a.jpg", 43),
        // Length prefixes keep field boundaries: "ph"+"otos" is not "photos".
        dek_aad("acme", "ph", "otosa.jpg", 42),
    ] {
        assert!(unwrap(&kek, &wrapped, &other, "dek").is_err());
    }
}

#[test]
fn chunks_detect_tampering_truncation_and_reordering() {
    let cipher = ContentCipher::new(&key(5));
    let chunks: Vec<Vec<u8>> = (0..3u32)
        .map(|i| cipher.seal(i, i == 2, &[i as u8; 100]))
        .collect();
    assert_eq!(chunks[0].len(), sealed_len(100));
    for (i, c) in chunks.iter().enumerate() {
        let plain = cipher.open(i as u32, i == 2, c).unwrap();
        assert_eq!(plain, vec![i as u8; 100]);
    }
    // A flipped bit anywhere, ciphertext or tag.
    for at in [0, 50, 99, 100, 115] {
        let mut bad = chunks[1].clone();
        bad[at] ^= 0x80;
        assert_eq!(
            cipher.open(1, false, &bad),
            Err(CryptoError::Chunk { index: 1 })
        );
    }
    // Reordered: chunk 0's bytes read as chunk 1.
    assert!(cipher.open(1, false, &chunks[0]).is_err());
    // Truncated: dropping the last chunk makes chunk 1 the last, which it was not.
    assert!(cipher.open(1, true, &chunks[1]).is_err());
    // Extended: the real last chunk read as a middle one.
    assert!(cipher.open(2, false, &chunks[2]).is_err());
    // Cut short inside a chunk.
    assert!(cipher.open(0, false, &chunks[0][..60]).is_err());
    assert!(matches!(
        cipher.open(0, false, &chunks[0][..5]),
        Err(CryptoError::ChunkTooShort { .. })
    ));
    // Another version's key.
    assert!(ContentCipher::new(&key(6))
        .open(0, false, &chunks[0])
        .is_err());
}

#[test]
fn nonces_are_unique_per_index_and_flag() {
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..10_000u32 {
        assert!(seen.insert(chunk_nonce(i, false)));
        assert!(seen.insert(chunk_nonce(i, true)));
    }
    assert!(seen.insert(chunk_nonce(u32::MAX, true)));
}

#[test]
fn debug_output_never_shows_key_bytes() {
    let k = key(0xab);
    let text = format!("{k:?} {:?}", ContentCipher::new(&k));
    assert!(
        !text.contains("171") && !text.to_lowercase().contains("ab, ab"),
        "{text}"
    );
    assert!(text.contains("redacted"));
    let w = wrap(&k, &k, b"", [0; NONCE_BYTES]);
    assert_eq!(format!("{w:?}"), "WrappedKey(48 bytes)");
}

#[test]
fn customer_key_digests_compare() {
    let a = key(1).sha256();
    let b = key(2).sha256();
    assert!(digest_eq(&a, &a));
    assert!(!digest_eq(&a, &b));
    assert!(SecretKey::from_slice(&[0; 31]).is_err());
}
