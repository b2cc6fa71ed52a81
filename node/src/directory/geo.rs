//! A tenant's geo-redundancy in the directory: its secondary copy, its epoch, the
//! failovers it went through, and the transitions the directory applies to them.
//!
//! The directory is the authority on which group is a tenant's primary. The epoch
//! grows with every failover; a primary group acknowledges writes of a geo tenant
//! only under a lease for the current epoch (`crate::geo::lease`), and every replica
//! group reconciles its role for the tenant against this record
//! (`crate::geo::reconcile`). Every function here is a deterministic transition of
//! a [`TenantRecord`]: each replica of the directory reaches the same verdict.

use super::{TenantRecord, TenantStatus};
use serde::{Deserialize, Serialize};
use stratus_core::placement::GroupId;
use stratus_core::Redundancy;

/// The paired-region copy of a geo-redundant tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secondary {
    pub region: String,
    pub group: GroupId,
    /// The first full copy (seed) has reached the secondary; until then it is
    /// "bootstrapping" and a planned failover is refused.
    pub seeded: bool,
}

/// What is left to do after a failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reprotect {
    /// Unplanned: the old primary's copy (and any writes it never shipped) waits
    /// in the old region for `stratus tenant reprotect`.
    Pending,
    /// Re-protected; the old primary's unshipped writes went to this container.
    Done {
        recovery_container: Option<String>,
        recovered_objects: u64,
    },
    /// Planned: nothing was lost and the old primary became the secondary.
    NotNeeded,
}

impl Reprotect {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reprotect::Pending => "pending",
            Reprotect::Done { .. } => "done",
            Reprotect::NotNeeded => "not-needed",
        }
    }
}

/// One failover of a tenant, as recorded when it completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// The epoch the failover started.
    pub epoch: u64,
    pub planned: bool,
    pub at_ms: u64,
    pub from_region: String,
    pub from_group: GroupId,
    pub to_region: String,
    pub to_group: GroupId,
    /// The class before the failover (a reprotect restores its read access).
    pub class_before: Redundancy,
    /// Every write acknowledged before this time survived.
    pub last_sync_ms: u64,
    /// The last operation the new primary had applied from the old one.
    pub synced_seq: u64,
    /// Operations the old primary had applied beyond `synced_seq`, when known.
    pub lost_ops_max: Option<u64>,
    pub reprotect: Reprotect,
}

/// Why a geo transition was refused (the same on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GeoRefusal {
    /// The tenant is in the wrong state for the request.
    #[error("{0}")]
    State(String),
    /// The request itself cannot be honoured (a class change that moves data).
    #[error("{0}")]
    Invalid(String),
}

/// One tenant in a lease renewal: the epoch its primary asks a lease for and the
/// primary's outbox position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAsk {
    pub tenant: String,
    pub epoch: u64,
    /// The last outbox sequence number applied by the primary.
    pub head_seq: u64,
}

/// The last lease granted to a tenant's primary, recorded in the directory.
///
/// A lease lets the primary acknowledge writes numbered up to `seq_limit` only;
/// the limit grows with every renewal by a credit of twice what the primary
/// applied since the previous one (at least [`LEASE_SEQ_CREDIT_MIN`]). So every
/// acknowledged write of the primary is numbered at most the recorded limit, and
/// after an unplanned failover `seq_limit - (what the secondary applied)` bounds
/// the acknowledged writes that were lost, wherever the directory's leader is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    pub group: GroupId,
    pub epoch: u64,
    /// The primary's head when it renewed.
    pub head_seq: u64,
    pub seq_limit: u64,
    pub at_ms: u64,
}

/// The least a renewal lets a primary's sequence grow.
pub const LEASE_SEQ_CREDIT_MIN: u64 = 256;

impl TenantRecord {
    /// Grants (and records) a lease for `group` at `ask`, or refuses it.
    pub fn grant_lease(&mut self, group: GroupId, ask: &LeaseAsk, now_ms: u64) -> Option<u64> {
        if !self.lease_allowed(group, ask.epoch) {
            return None;
        }
        let previous = self
            .lease
            .as_ref()
            .filter(|l| l.group == group && l.epoch == ask.epoch);
        let grown = previous.map_or(0, |l| ask.head_seq.saturating_sub(l.head_seq));
        let credit = (2 * grown).max(LEASE_SEQ_CREDIT_MIN);
        let seq_limit = (ask.head_seq + credit).max(previous.map_or(0, |l| l.seq_limit));
        self.lease = Some(LeaseGrant {
            group,
            epoch: ask.epoch,
            head_seq: ask.head_seq,
            seq_limit,
            at_ms: now_ms,
        });
        Some(seq_limit)
    }
}

/// The outcome of a failover's last step, carried by `CompleteFailover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverOutcome {
    pub last_sync_ms: u64,
    pub synced_seq: u64,
    pub lost_ops_max: Option<u64>,
}

impl TenantRecord {
    /// Whether the tenant's primary must hold a write lease to acknowledge writes:
    /// geo tenants and tenants that went through a failover (the epoch is what
    /// fences an old primary).
    pub fn needs_lease(&self) -> bool {
        self.secondary.is_some() || self.epoch > 0
    }

    /// Whether a lease for `group` at `epoch` may be granted now.
    pub fn lease_allowed(&self, group: GroupId, epoch: u64) -> bool {
        self.group == group && self.epoch == epoch && self.status == TenantStatus::Active
    }

    /// The failover waiting for a reprotect, if any.
    pub fn pending_reprotect(&self) -> Option<&FailoverRecord> {
        self.failovers
            .last()
            .filter(|f| f.reprotect == Reprotect::Pending && f.epoch + 1 == self.epoch)
    }

    /// Applies a class change. `secondary` is where a new geo copy would go (the
    /// caller placed it); returns whether the change needs it.
    pub fn update_class(
        &mut self,
        class: Redundancy,
        secondary: impl FnOnce() -> Result<(String, GroupId), String>,
    ) -> Result<(), GeoRefusal> {
        let t = self.name.clone();
        if self.status != TenantStatus::Active {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?} is failing over: change its redundancy once the failover completed"
            )));
        }
        if class.local() != self.redundancy.local() {
            return Err(GeoRefusal::Invalid(format!(
                "tenant {t:?} is {} in its primary region; changing to {class} would move its data to another group, which is not supported: keep the {} part (e.g. {} or {})",
                self.redundancy.local(),
                self.redundancy.local(),
                Redundancy::compose(self.redundancy.local(), true, false),
                Redundancy::compose(self.redundancy.local(), true, true),
            )));
        }
        match (self.secondary.is_some(), class.is_geo()) {
            (false, true) => {
                if self.pending_reprotect().is_some() {
                    return Err(GeoRefusal::State(format!(
                        "tenant {t:?} failed over and its old region still holds its former copy: run `stratus tenant reprotect {t}` to make that region the secondary again"
                    )));
                }
                let (region, group) = secondary().map_err(GeoRefusal::Invalid)?;
                self.secondary = Some(Secondary {
                    region,
                    group,
                    seeded: false,
                });
            }
            (true, false) => self.secondary = None,
            _ => {}
        }
        self.redundancy = class;
        Ok(())
    }

    /// First step of a failover: no lease is granted from now on, so the primary
    /// stops acknowledging writes once its lease lapses.
    pub fn begin_failover(&mut self, planned: bool, now_ms: u64) -> Result<(), GeoRefusal> {
        let t = self.name.clone();
        let Some(sec) = &self.secondary else {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?} is {} and has no secondary region to fail over to",
                self.redundancy
            )));
        };
        if let TenantStatus::FailingOver { planned: p, .. } = self.status {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?} is already failing over ({}); wait for it to finish",
                if p { "planned" } else { "unplanned" }
            )));
        }
        if !sec.seeded {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?}'s secondary in {} is still bootstrapping (its first copy is not complete): it cannot take over yet; see `stratus tenant show {t}`",
                sec.region
            )));
        }
        self.status = TenantStatus::FailingOver {
            planned,
            since_ms: now_ms,
        };
        Ok(())
    }

    /// Undoes [`Self::begin_failover`] (the driver could not finish).
    pub fn abort_failover(&mut self) -> Result<(), GeoRefusal> {
        match self.status {
            TenantStatus::FailingOver { .. } => {
                self.status = TenantStatus::Active;
                Ok(())
            }
            TenantStatus::Active => Err(GeoRefusal::State(format!(
                "tenant {:?} is not failing over",
                self.name
            ))),
        }
    }

    /// Last step of a failover: the secondary becomes primary under a new epoch.
    /// Planned: the old primary becomes the secondary. Unplanned: the tenant is
    /// LRS in the new region until re-protected.
    pub fn complete_failover(
        &mut self,
        planned: bool,
        now_ms: u64,
        outcome: FailoverOutcome,
    ) -> Result<FailoverRecord, GeoRefusal> {
        let t = self.name.clone();
        match self.status {
            TenantStatus::FailingOver { planned: p, .. } if p == planned => {}
            _ => {
                return Err(GeoRefusal::State(format!(
                    "tenant {t:?} has no {} failover in progress",
                    if planned { "planned" } else { "unplanned" }
                )))
            }
        }
        let Some(sec) = self.secondary.clone() else {
            return Err(GeoRefusal::State(format!("tenant {t:?} has no secondary")));
        };
        let record = FailoverRecord {
            epoch: self.epoch,
            planned,
            at_ms: now_ms,
            from_region: self.region.clone(),
            from_group: self.group,
            to_region: sec.region.clone(),
            to_group: sec.group,
            class_before: self.redundancy,
            last_sync_ms: outcome.last_sync_ms,
            synced_seq: outcome.synced_seq,
            lost_ops_max: if planned {
                Some(0)
            } else {
                outcome.lost_ops_max
            },
            reprotect: if planned {
                Reprotect::NotNeeded
            } else {
                Reprotect::Pending
            },
        };
        if planned {
            self.secondary = Some(Secondary {
                region: self.region.clone(),
                group: self.group,
                seeded: true,
            });
            // The new primary is an LRS group: GZRS keeps its geo copy but not zones.
            self.redundancy =
                Redundancy::compose(Redundancy::Lrs, true, self.redundancy.read_access());
        } else {
            self.secondary = None;
            self.redundancy = Redundancy::Lrs;
        }
        self.region = sec.region;
        self.group = sec.group;
        self.epoch += 1;
        self.status = TenantStatus::Active;
        self.failovers.push(record.clone());
        Ok(record)
    }

    /// After an unplanned failover: the old primary's group becomes the secondary
    /// again (it will be wiped and re-seeded); its unshipped writes were kept in
    /// `recovery_container`.
    pub fn complete_reprotect(
        &mut self,
        recovery_container: Option<String>,
        recovered_objects: u64,
    ) -> Result<(), GeoRefusal> {
        let t = self.name.clone();
        let Some(f) = self.pending_reprotect().cloned() else {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?} has no unplanned failover waiting for a reprotect"
            )));
        };
        if self.status != TenantStatus::Active || self.secondary.is_some() {
            return Err(GeoRefusal::State(format!(
                "tenant {t:?} already has a secondary or is failing over"
            )));
        }
        self.secondary = Some(Secondary {
            region: f.from_region.clone(),
            group: f.from_group,
            seeded: false,
        });
        self.redundancy = Redundancy::compose(Redundancy::Lrs, true, f.class_before.read_access());
        if let Some(last) = self.failovers.last_mut() {
            last.reprotect = Reprotect::Done {
                recovery_container,
                recovered_objects,
            };
        }
        Ok(())
    }

    /// The secondary's first full copy is complete.
    pub fn mark_seeded(&mut self, group: GroupId, epoch: u64) -> bool {
        match &mut self.secondary {
            Some(s) if s.group == group && self.epoch == epoch && !s.seeded => {
                s.seeded = true;
                true
            }
            _ => false,
        }
    }
}

/// The name of the container holding what a reprotect recovered from the old
/// primary of the failover that started at `epoch`.
pub fn recovery_container(epoch: u64) -> String {
    format!("recovery-epoch-{epoch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grs() -> TenantRecord {
        TenantRecord {
            name: "acme".into(),
            region: "west".into(),
            redundancy: Redundancy::Grs,
            group: 1,
            status: TenantStatus::Active,
            created_ms: 0,
            epoch: 0,
            secondary: Some(Secondary {
                region: "north".into(),
                group: 3,
                seeded: true,
            }),
            failovers: Vec::new(),
            auto_failover_after_ms: None,
            lease: None,
        }
    }

    #[test]
    fn a_lease_limit_bounds_what_the_primary_may_acknowledge() {
        let mut t = grs();
        let ask = |head_seq| LeaseAsk {
            tenant: "acme".into(),
            epoch: 0,
            head_seq,
        };
        assert_eq!(
            t.grant_lease(1, &ask(10), 0),
            Some(10 + LEASE_SEQ_CREDIT_MIN)
        );
        // A busy primary gets twice what it applied since the last renewal.
        assert_eq!(t.grant_lease(1, &ask(1010), 1000), Some(3010));
        // The limit never shrinks.
        assert_eq!(t.grant_lease(1, &ask(1011), 2000), Some(3010));
        assert_eq!(t.grant_lease(3, &ask(5), 2000), None, "not the primary");
        t.begin_failover(false, 2500).unwrap();
        assert_eq!(t.grant_lease(1, &ask(1012), 3000), None, "failing over");
        assert_eq!(t.lease.as_ref().map(|l| l.seq_limit), Some(3010));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failover_knows_when_this_node_applied_the_last_lease_grant() {
        use crate::directory::{DirectoryView, LeaseSeen};
        let view = DirectoryView::default();
        let put = |t: &TenantRecord| {
            view.write(|d| {
                d.tenants.insert(t.name.clone(), t.clone());
            })
        };
        let mut t = grs();
        put(&t);
        assert_eq!(
            view.lease_seen("acme"),
            LeaseSeen::Unknown,
            "not failing over"
        );
        assert_eq!(
            view.lease_seen("other"),
            LeaseSeen::Unknown,
            "no such tenant"
        );

        let ask = LeaseAsk {
            tenant: "acme".into(),
            epoch: 0,
            head_seq: 10,
        };
        t.grant_lease(1, &ask, 100);
        let applied_at = tokio::time::Instant::now();
        view.note_lease("acme", t.lease.clone().expect("granted"));
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        t.begin_failover(false, 2100).expect("begins");
        put(&t);
        assert_eq!(view.lease_seen("acme"), LeaseSeen::AppliedAt(applied_at));

        // A grant this node did not apply itself (it came in a snapshot): unknown,
        // so the failover waits the whole time from its own BeginFailover.
        let mut other = t.clone();
        other.lease.as_mut().expect("granted").seq_limit += 1;
        put(&other);
        assert_eq!(view.lease_seen("acme"), LeaseSeen::Unknown);

        // Never granted: nothing to wait for.
        let mut fresh = grs();
        fresh.begin_failover(true, 0).expect("begins");
        put(&fresh);
        assert_eq!(view.lease_seen("acme"), LeaseSeen::Never);
    }

    fn outcome() -> FailoverOutcome {
        FailoverOutcome {
            last_sync_ms: 90,
            synced_seq: 41,
            lost_ops_max: Some(3),
        }
    }

    #[test]
    fn an_unplanned_failover_moves_the_primary_and_waits_for_a_reprotect() {
        let mut t = grs();
        assert!(t.needs_lease() && t.lease_allowed(1, 0));
        t.begin_failover(false, 100).unwrap();
        assert!(!t.lease_allowed(1, 0), "no lease while failing over");
        assert!(t.begin_failover(false, 101).is_err());
        assert!(
            t.complete_failover(true, 102, outcome()).is_err(),
            "wrong kind"
        );
        let f = t.complete_failover(false, 105, outcome()).unwrap();
        assert_eq!((t.group, t.region.as_str(), t.epoch), (3, "north", 1));
        assert_eq!(t.redundancy, Redundancy::Lrs);
        assert!(t.secondary.is_none() && t.needs_lease());
        assert!(t.lease_allowed(3, 1) && !t.lease_allowed(1, 0) && !t.lease_allowed(1, 1));
        assert_eq!((f.from_group, f.to_group, f.lost_ops_max), (1, 3, Some(3)));
        assert_eq!(t.pending_reprotect().map(|f| f.epoch), Some(0));
        // Adding a geo copy goes through the reprotect, which knows the old copy.
        let e = t
            .update_class(Redundancy::Grs, || Ok(("west".into(), 1)))
            .unwrap_err();
        assert!(
            e.to_string().contains("stratus tenant reprotect acme"),
            "{e}"
        );
        t.complete_reprotect(Some(recovery_container(0)), 2)
            .unwrap();
        assert_eq!(t.redundancy, Redundancy::Grs);
        assert_eq!(
            t.secondary.as_ref().map(|s| (s.group, s.seeded)),
            Some((1, false))
        );
        assert!(t.complete_reprotect(None, 0).is_err(), "only once");
        assert!(t.begin_failover(true, 200).is_err(), "not seeded yet");
        assert!(t.mark_seeded(1, 1) && !t.mark_seeded(1, 1));
        t.begin_failover(true, 210).unwrap();
    }

    #[test]
    fn a_planned_failover_swaps_the_roles_and_keeps_read_access() {
        let mut t = grs();
        t.redundancy = Redundancy::RaGzrs;
        t.begin_failover(true, 10).unwrap();
        let f = t.complete_failover(true, 20, outcome()).unwrap();
        assert_eq!(f.reprotect, Reprotect::NotNeeded);
        assert_eq!(f.lost_ops_max, Some(0));
        assert_eq!((t.group, t.epoch), (3, 1));
        assert_eq!(
            t.secondary.as_ref().map(|s| (s.group, s.seeded)),
            Some((1, true))
        );
        assert_eq!(t.redundancy, Redundancy::RaGrs);
    }

    #[test]
    fn class_changes_keep_the_local_part() {
        let mut t = grs();
        t.secondary = None;
        t.redundancy = Redundancy::Lrs;
        let e = t
            .update_class(Redundancy::Gzrs, || Ok(("north".into(), 3)))
            .unwrap_err();
        assert!(matches!(e, GeoRefusal::Invalid(_)), "{e}");
        t.update_class(Redundancy::RaGrs, || Ok(("north".into(), 3)))
            .unwrap();
        assert_eq!(
            t.secondary.as_ref().map(|s| (s.group, s.seeded)),
            Some((3, false))
        );
        t.update_class(Redundancy::Grs, || panic!("already has one"))
            .unwrap();
        assert_eq!(t.redundancy, Redundancy::Grs);
        t.update_class(Redundancy::Lrs, || panic!("removing"))
            .unwrap();
        assert!(t.secondary.is_none());
        let mut lrs = grs();
        lrs.secondary = None;
        assert!(lrs.begin_failover(false, 1).is_err(), "no secondary");
    }
}
