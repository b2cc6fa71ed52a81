//! The checkers against hand-made histories: good ones pass, bad ones are caught.

use super::{linear, lost};
use crate::history::{Cond, Event, Op, Outcome};
use std::time::Duration;

fn ev(client: u32, op: Op, from_ms: u64, to_ms: u64, outcome: Outcome) -> Event {
    Event {
        client,
        key: "t/c/k".into(),
        op,
        invoked: Duration::from_millis(from_ms),
        completed: Duration::from_millis(to_ms),
        outcome,
    }
}

fn put(id: u64) -> Op {
    Op::Put {
        id,
        size: 1,
        cond: Cond::Always,
    }
}

fn read(v: Option<u64>) -> Outcome {
    Outcome::Read(v)
}

#[test]
fn a_clean_history_passes() {
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(2, Op::Get, 5, 8, read(None)), // concurrent with the put: may see nothing
        ev(2, Op::Get, 12, 15, read(Some(1))),
        ev(
            1,
            Op::Put {
                id: 2,
                size: 1,
                cond: Cond::IfMatch(1),
            },
            20,
            30,
            Outcome::Done,
        ),
        ev(
            2,
            Op::Put {
                id: 3,
                size: 1,
                cond: Cond::IfMatch(1),
            },
            21,
            31,
            Outcome::Refused,
        ),
        ev(1, Op::Delete { cond: Cond::Always }, 40, 50, Outcome::Done),
        ev(lost::VERIFIER, Op::Get, 60, 61, read(None)),
    ];
    assert_eq!(linear::check(&h), vec![]);
    assert_eq!(lost::check(&h), vec![]);
}

#[test]
fn a_stale_read_is_rejected() {
    // Write 2 completed before the read began, yet the read returns write 1
    // (what an isolated old leader would serve).
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(1, put(2), 20, 30, Outcome::Done),
        ev(2, Op::Get, 40, 45, read(Some(1))),
    ];
    let f = linear::check(&h);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(!f[0].inconclusive);
    assert!(f[0].detail.contains("not linearizable"), "{}", f[0].detail);
}

#[test]
fn a_lost_write_is_rejected_by_both_checkers() {
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(1, put(2), 20, 30, Outcome::Done),
        ev(lost::VERIFIER, Op::Get, 100, 101, read(Some(1))),
    ];
    assert_eq!(linear::check(&h).len(), 1);
    let l = lost::check(&h);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].detail.contains("is lost"), "{}", l[0].detail);
    // An acknowledged put that vanished without any delete.
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(lost::VERIFIER, Op::Get, 100, 101, read(None)),
    ];
    assert_eq!(lost::check(&h).len(), 1);
    assert_eq!(linear::check(&h).len(), 1);
}

#[test]
fn a_read_of_a_value_never_written_is_rejected() {
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(2, Op::Get, 20, 25, read(Some(99))),
    ];
    assert_eq!(linear::check(&h).len(), 1);
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(lost::VERIFIER, Op::Get, 20, 25, read(Some(99))),
    ];
    assert!(lost::check(&h)[0].detail.contains("no client issued"));
}

#[test]
fn unknown_writes_may_or_may_not_take_effect() {
    // The unknown write 2 may be seen late or never.
    let seen = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(1, put(2), 20, 30, Outcome::Unknown("timeout".into())),
        ev(2, Op::Get, 500, 501, read(Some(2))),
    ];
    assert_eq!(linear::check(&seen), vec![]);
    let unseen = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(1, put(2), 20, 30, Outcome::Unknown("timeout".into())),
        ev(2, Op::Get, 500, 501, read(Some(1))),
    ];
    assert_eq!(linear::check(&unseen), vec![]);
    // But it cannot take effect twice: 2 then 1 then 2 again is impossible.
    let twice = vec![
        ev(1, put(2), 0, 10, Outcome::Unknown("timeout".into())),
        ev(2, Op::Get, 20, 21, read(Some(2))),
        ev(3, put(1), 30, 40, Outcome::Done),
        ev(2, Op::Get, 50, 51, read(Some(2))),
    ];
    assert_eq!(linear::check(&twice).len(), 1);
}

#[test]
fn conditions_are_part_of_the_model() {
    // If-None-Match * succeeded although the key held write 1 the whole time.
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(
            2,
            Op::Put {
                id: 2,
                size: 1,
                cond: Cond::IfAbsent,
            },
            20,
            30,
            Outcome::Done,
        ),
    ];
    assert_eq!(linear::check(&h).len(), 1);
    // A delete that found nothing although write 1 was there.
    let h = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(
            2,
            Op::Delete { cond: Cond::Always },
            20,
            30,
            Outcome::Absent,
        ),
    ];
    assert_eq!(linear::check(&h).len(), 1);
}
