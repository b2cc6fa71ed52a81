//! The audit log's pure part: a record, its canonical bytes and the hash chain.
//!
//! Each tenant has one chain. Record `n` (from 1) carries the SHA-256 of record
//! `n - 1` (`prev_hash`; record 1 carries the tenant's genesis hash) and its own
//! `hash = SHA-256("stratus audit v1" ‖ prev_hash ‖ canonical fields)`. Editing a
//! record breaks its own hash; deleting or reordering records breaks the sequence
//! and `prev_hash` of the first record out of place. [`verify`] names the first
//! record that breaks the chain. Exported as JSON lines (hex hashes).

use crate::crypto::sha256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An event before it joins the chain (what a node reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened, ms since the epoch, on the reporting node's clock.
    pub time_ms: u64,
    /// `operator`, `token:<id>[/principal]`, or `anonymous`.
    pub principal: String,
    /// The API operation (`GetObject`, `RotateKey`, `Failover`, ...).
    pub operation: String,
    /// What it touched (`object acme/photos/a.jpg`, `tenant acme`, ...).
    pub resource: String,
    /// `ok`, or the refusal's gRPC code and Stratus code (`permission-denied/access-denied`).
    pub result: String,
    /// The node that served the request.
    pub node: u64,
}

/// A record of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub tenant: String,
    /// Position in the tenant's chain, from 1, without gaps.
    pub seq: u64,
    pub event: AuditEvent,
    /// Hex SHA-256 of the previous record (the genesis hash for record 1).
    pub prev_hash: String,
    /// Hex SHA-256 of this record (see the module docs).
    pub hash: String,
}

/// Longest field accepted in an event (longer ones are cut, marked with `…`).
pub const AUDIT_FIELD_BYTES_MAX: usize = 1024;

/// The hash before a tenant's first record.
pub fn genesis(tenant: &str) -> [u8; 32] {
    sha256(format!("stratus audit genesis v1\n{tenant}").as_bytes())
}

fn put(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s);
}

/// The hash of a record with these contents.
pub fn record_hash(tenant: &str, seq: u64, event: &AuditEvent, prev: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"stratus audit v1");
    h.update(prev);
    put(&mut h, tenant.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(event.time_ms.to_be_bytes());
    h.update(event.node.to_be_bytes());
    put(&mut h, event.principal.as_bytes());
    put(&mut h, event.operation.as_bytes());
    put(&mut h, event.resource.as_bytes());
    put(&mut h, event.result.as_bytes());
    h.finalize().into()
}

/// Cuts over-long fields so a record stays bounded.
pub fn bounded(mut e: AuditEvent) -> AuditEvent {
    for f in [
        &mut e.principal,
        &mut e.operation,
        &mut e.resource,
        &mut e.result,
    ] {
        if f.len() > AUDIT_FIELD_BYTES_MAX {
            let mut cut = AUDIT_FIELD_BYTES_MAX;
            while !f.is_char_boundary(cut) {
                cut -= 1;
            }
            f.truncate(cut);
            f.push('…');
        }
    }
    e
}

/// Appends `event` after a chain whose last record is (`seq`, `hash`).
pub fn chain(tenant: &str, last_seq: u64, last_hash: &[u8; 32], event: AuditEvent) -> AuditRecord {
    let seq = last_seq + 1;
    let event = bounded(event);
    let hash = record_hash(tenant, seq, &event, last_hash);
    AuditRecord {
        tenant: tenant.to_string(),
        seq,
        event,
        prev_hash: hex::encode(last_hash),
        hash: hex::encode(hash),
    }
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index} (seq {seq}) breaks the chain: {why}")]
pub struct ChainBreak {
    /// Position in the checked sequence, from 1 (the line of an export).
    pub index: usize,
    /// The seq the record claims.
    pub seq: u64,
    pub why: String,
}

/// Checks `records` form an unbroken chain. `start`: the (seq, hash) before the
/// first record, or `None` to require the chain to start at the tenant's genesis.
pub fn verify<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    start: Option<(u64, [u8; 32])>,
) -> Result<Option<(u64, [u8; 32])>, ChainBreak> {
    let mut last = start;
    for (i, r) in records.into_iter().enumerate() {
        let index = i + 1;
        let fail = |why: String| ChainBreak {
            index,
            seq: r.seq,
            why,
        };
        let (want_seq, want_prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, genesis(&r.tenant)),
        };
        if r.seq != want_seq {
            return Err(fail(format!(
                "its seq is {}, the chain expects {want_seq} (a record was deleted, inserted or moved)",
                r.seq
            )));
        }
        if r.prev_hash != hex::encode(want_prev) {
            return Err(fail(
                "its prev_hash is not the hash of the record before it (a record was deleted, inserted or moved)".into(),
            ));
        }
        let hash = record_hash(&r.tenant, r.seq, &r.event, &want_prev);
        if r.hash != hex::encode(hash) {
            return Err(fail(
                "its contents do not match its hash (the record was edited)".into(),
            ));
        }
        last = Some((r.seq, hash));
    }
    Ok(last)
}

/// Parses a hex hash.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_ms: 1_000 + i,
            principal: format!("token:{i:032x}"),
            operation: "GetObject".into(),
            resource: format!("object acme/c/k{i}"),
            result: "ok".into(),
            node: 1,
        }
    }

    fn log(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        let mut last = (0, genesis("acme"));
        for i in 0..n {
            let r = chain("acme", last.0, &last.1, event(i));
            last = (r.seq, parse_hash(&r.hash).unwrap());
            out.push(r);
        }
        out
    }

    #[test]
    fn an_untouched_chain_verifies_and_survives_json() {
        let l = log(5);
        assert_eq!(verify(&l, None).unwrap().unwrap().0, 5);
        let lines: Vec<String> = l
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        let back: Vec<AuditRecord> = lines
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(back, l);
        // A later segment verifies from its predecessor.
        let at2 = (2, parse_hash(&l[1].hash).unwrap());
        assert!(verify(&l[2..], Some(at2)).is_ok());
    }

    #[test]
    fn every_edit_deletion_and_swap_fails_at_exactly_that_record() {
        let l = log(6);
        for i in 0..l.len() {
            for field in 0..5 {
                let mut bad = l.clone();
                let e = &mut bad[i].event;
                match field {
                    0 => e.time_ms += 1,
                    1 => e.principal.push('x'),
                    2 => e.operation = "PutObject".into(),
                    3 => e.resource.push('/'),
                    _ => e.result = "ok ".into(),
                }
                assert_eq!(
                    verify(&bad, None).unwrap_err().index,
                    i + 1,
                    "edit {field} of {i}"
                );
            }
            let mut deleted = l.clone();
            deleted.remove(i);
            if i + 1 < l.len() {
                assert_eq!(
                    verify(&deleted, None).unwrap_err().index,
                    i + 1,
                    "delete {i}"
                );
            }
            if i + 1 < l.len() {
                let mut swapped = l.clone();
                swapped.swap(i, i + 1);
                assert_eq!(verify(&swapped, None).unwrap_err().index, i + 1, "swap {i}");
            }
        }
        // Another tenant's records do not chain into this one.
        let mut other = l.clone();
        other[0].tenant = "evil".into();
        assert_eq!(verify(&other, None).unwrap_err().index, 1);
    }

    #[test]
    fn long_fields_are_bounded() {
        let mut e = event(0);
        e.resource = "é".repeat(AUDIT_FIELD_BYTES_MAX);
        let b = bounded(e);
        assert!(b.resource.len() <= AUDIT_FIELD_BYTES_MAX + '…'.len_utf8());
    }
}
