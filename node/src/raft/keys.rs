//! Key layout of one node's engine (log entries live in segment blobs, see
//! [`super::segments`]). Every key of a group starts with
//! `b'g' ++ group_id (u64, big-endian)`, then one byte naming the space:
//!
//! | space | key after the space byte | value (framed) |
//! |---|---|---|
//! | `v` vote | - | postcard `Vote` |
//! | `c` committed | - | postcard `LogId` |
//! | `p` last purged | - | postcard `LogId` |
//! | `m` state machine meta | - | postcard `(last applied, membership)` |
//! | `s` current snapshot | - | postcard snapshot meta + spool blob name |
//! | `n` installing | - | the snapshot being installed (restart finishes it) |
//! | `a` application | owned by the directory or the object store | |
//! | `r` replica-local | owned by the application; never snapshotted or compared | |

/// Prefix of every key of `group`.
pub fn group_prefix(group: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(b'g');
    k.extend_from_slice(&group.to_be_bytes());
    k
}

fn space(group: u64, space: u8) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.push(space);
    k
}

pub fn vote(group: u64) -> Vec<u8> {
    space(group, b'v')
}

pub fn committed(group: u64) -> Vec<u8> {
    space(group, b'c')
}

pub fn purged(group: u64) -> Vec<u8> {
    space(group, b'p')
}

pub fn sm_meta(group: u64) -> Vec<u8> {
    space(group, b'm')
}

pub fn snapshot(group: u64) -> Vec<u8> {
    space(group, b's')
}

/// The snapshot being installed, present only while an install is under way.
pub fn installing(group: u64) -> Vec<u8> {
    space(group, b'n')
}

/// Prefix of the application space of `group`.
pub fn app(group: u64) -> Vec<u8> {
    space(group, b'a')
}

/// End of the application space (exclusive).
pub fn app_end(group: u64) -> Vec<u8> {
    space(group, b'a' + 1)
}

/// Prefix of the replica-local space of `group`: bookkeeping of this copy only
/// (chunks to repair), excluded from snapshots and convergence checks.
pub fn local(group: u64) -> Vec<u8> {
    space(group, b'r')
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_do_not_overlap() {
        assert!(app(1) < app_end(1));
        assert!(
            app_end(1) <= local(1),
            "application and local spaces are disjoint"
        );
        assert!(group_prefix(1) < group_prefix(2));
        assert!(vote(1) > app_end(1) || vote(1) < app(1));
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
