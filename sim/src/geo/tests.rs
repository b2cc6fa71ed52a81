//! The geo checks against hand-made histories: good ones pass, bad ones are caught.

use super::check::{self, Fork};
use super::{FailoverDone, GeoRecord, Recovered, ReprotectDone};
use crate::check::{linear, lost};
use crate::history::{Cond, Event, Op, Outcome};
use crate::net::EPOCH_MS;
use std::time::Duration;
use stratus_client::{FailoverInfo, TenantInfo};

const KEY: &str = "t/data/k";

fn ev(client: u32, op: Op, from_ms: u64, to_ms: u64, outcome: Outcome) -> Event {
    Event {
        client,
        key: KEY.into(),
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

fn fork(last_sync_ms: u64, done_ms: u64, window: Option<u64>) -> Fork {
    Fork {
        tenant: "t".into(),
        last_sync: Duration::from_millis(last_sync_ms),
        done_at: Duration::from_millis(done_ms),
        lost_ops_max: window,
    }
}

fn final_read(v: Option<u64>, at: u64) -> Event {
    ev(lost::VERIFIER, Op::Get, at, at + 1, Outcome::Read(v))
}

fn violations(events: &[Event], forks: &[Fork]) -> Vec<String> {
    let (adjusted, counts) = check::through_forks(events, forks);
    let mut out: Vec<String> = linear::check(&adjusted)
        .into_iter()
        .map(|f| f.detail)
        .collect();
    out.extend(lost::check(&adjusted).into_iter().map(|l| l.detail));
    out.extend(check::fork_violations(&counts));
    out
}

#[test]
fn a_write_after_the_last_sync_time_may_be_lost_in_a_failover() {
    // Write 1 synced (done before 100 ms), write 2 acknowledged after: lost.
    let h = vec![
        ev(1, put(1), 0, 50, Outcome::Done),
        ev(1, put(2), 120, 150, Outcome::Done),
        ev(2, Op::Get, 160, 170, Outcome::Read(Some(2))), // on the lost branch
        final_read(Some(1), 1000),
    ];
    assert!(
        !violations(&h, &[]).is_empty(),
        "without the fork it is a loss"
    );
    assert_eq!(
        violations(&h, &[fork(100, 500, Some(5))]),
        Vec::<String>::new()
    );
}

#[test]
fn a_write_before_the_last_sync_time_must_survive() {
    let h = vec![
        ev(1, put(1), 0, 50, Outcome::Done),
        ev(1, put(2), 60, 80, Outcome::Done),
        final_read(Some(1), 1000),
    ];
    let v = violations(&h, &[fork(100, 500, Some(5))]);
    assert!(
        !v.is_empty(),
        "write 2 was acknowledged before the last sync time"
    );
}

#[test]
fn a_write_after_the_failover_must_survive() {
    let h = vec![
        ev(1, put(1), 0, 50, Outcome::Done),
        ev(1, put(2), 600, 650, Outcome::Done),
        final_read(Some(1), 1000),
    ];
    assert!(!violations(&h, &[fork(100, 500, Some(5))]).is_empty());
}

#[test]
fn more_losses_than_the_reported_window_are_caught() {
    let mut h: Vec<Event> = (1..=4)
        .map(|i| ev(1, put(i), 100 + i * 20, 110 + i * 20, Outcome::Done))
        .collect();
    h.push(final_read(None, 1000));
    let v = violations(&h, &[fork(100, 500, Some(2))]);
    assert!(
        v.iter().any(|v| v.contains("loss window is 2")),
        "four lost, window two: {v:?}"
    );
    assert!(violations(&h, &[fork(100, 500, Some(4))]).is_empty());
}

#[test]
fn a_stale_read_from_the_secondary_is_caught() {
    let at = |ms: u64| Some(EPOCH_MS + ms);
    let good = vec![
        ev(1, put(1), 0, 10, Outcome::Done),
        ev(1, put(2), 20, 30, Outcome::Done),
        // Last sync 25 ms: write 2 (done at 30) need not be there.
        ev(
            2,
            Op::SecondaryGet {
                last_sync_ms: at(25),
            },
            40,
            45,
            Outcome::Read(Some(1)),
        ),
    ];
    assert!(check::secondary_reads(&good).is_empty());
    let mut stale = good.clone();
    stale.push(ev(
        2,
        Op::SecondaryGet {
            last_sync_ms: at(35),
        },
        50,
        55,
        Outcome::Read(Some(1)),
    ));
    assert_eq!(
        check::secondary_reads(&stale).len(),
        1,
        "write 2 was synced"
    );
    let mut without = good;
    without.push(ev(
        2,
        Op::SecondaryGet { last_sync_ms: None },
        50,
        55,
        Outcome::Read(Some(2)),
    ));
    assert_eq!(
        check::secondary_reads(&without).len(),
        1,
        "no last sync time"
    );
}

fn reprotected(recovered: Vec<(&str, Outcome)>, count: u64) -> GeoRecord {
    let info = TenantInfo {
        name: "t".into(),
        region: "b".into(),
        redundancy: Some(stratus_client::Redundancy::Grs),
        status: "active".into(),
        group_id: 7,
        created_at_ms: 0,
        epoch: 1,
        geo: None,
        failovers: vec![FailoverInfo {
            epoch: 0,
            planned: false,
            at_ms: 0,
            from_region: "a".into(),
            from_group_id: 1,
            to_region: "b".into(),
            to_group_id: 7,
            last_sync_ms: EPOCH_MS + 100,
            lost_operations_max: Some(9),
            reprotect: "done".into(),
            recovery_container: Some("recovery-epoch-0".into()),
            recovered_objects: count,
        }],
        auto_failover_after_s: None,
    };
    GeoRecord {
        failovers: vec![FailoverDone {
            tenant: "t".into(),
            planned: false,
            asked_at: Duration::from_millis(300),
            done_at: Duration::from_millis(500),
            first_write_at: None,
            attempts: 1,
            tenant_after: None,
            record: None,
            error: None,
        }],
        reprotects: vec![ReprotectDone {
            tenant: "t".into(),
            done_at: Duration::from_millis(900),
            attempts: 1,
            tenant_after: Some(info),
            error: None,
        }],
        recovered: recovered
            .into_iter()
            .map(|(key, outcome)| Recovered {
                tenant: "t".into(),
                container: "recovery-epoch-0".into(),
                key: key.into(),
                outcome,
            })
            .collect(),
        ..GeoRecord::default()
    }
}

#[test]
fn the_recovery_container_must_hold_the_last_unreplicated_put() {
    // The link was cut at 100 ms: write 2 (its key's last write) never shipped.
    let h = vec![
        ev(1, put(1), 0, 50, Outcome::Done),
        ev(1, put(2), 120, 150, Outcome::Done),
    ];
    let f = [fork(100, 500, Some(9))];
    let from = Some(Duration::from_millis(100));
    let good = reprotected(vec![("data/k", Outcome::Read(Some(2)))], 1);
    assert_eq!(check::recovery(&h, &good, &f, from), Vec::<String>::new());
    let missing = reprotected(vec![], 0);
    assert_eq!(check::recovery(&h, &missing, &f, from).len(), 1);
    let synced = reprotected(vec![("data/k", Outcome::Read(Some(1)))], 1);
    let v = check::recovery(&h, &synced, &f, from);
    assert!(
        v.iter().any(|v| v.contains("before the last sync time")),
        "write 1 was replicated: {v:?}"
    );
    let miscounted = reprotected(vec![("data/k", Outcome::Read(Some(2)))], 3);
    assert_eq!(check::recovery(&h, &miscounted, &f, from).len(), 1);
}
