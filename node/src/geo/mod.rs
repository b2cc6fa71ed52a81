//! Geo-replication on a node: the tasks that carry out what the directory decides
//! for geo-redundant tenants (DESIGN.md, "Geo-replication" and "Failover").
//!
//! - [`reconcile`]: on each replica group's leader, turns the directory's record of
//!   a tenant (primary group, secondary group, epoch) into the group's role for it.
//! - [`lease`]: a primary acknowledges writes of a geo tenant only under a write
//!   lease for the tenant's current epoch, renewed with the directory's leader.
//! - [`ship`]: on a primary's leader, ships outbox entries in order (chunks first)
//!   to the secondary group, seeds a new secondary with a full copy, and tracks the
//!   last sync time.
//! - [`failover`]: planned and unplanned failover and reprotect, driven from the
//!   node that received the request.
//! - [`status`]: last sync time, lag and geo status for `stratus tenant show`.
//!
//! The group-side state (roles, outbox, applying shipped entries) lives in
//! `crate::objects::geo`.

pub mod failover;
pub mod lease;
pub mod reconcile;
pub mod ship;
pub mod status;

use crate::objects::geo_apply::Roles;
use std::collections::BTreeMap;
use stratus_core::placement::GroupId;

/// A node's geo-replication state.
#[derive(Debug, Default)]
pub struct Geo {
    /// Each replica group's roles (shared with its state machine).
    pub roles: BTreeMap<GroupId, Roles>,
    /// Write leases held for tenants whose primary this node leads.
    pub leases: lease::LeaseTable,
    /// On primaries' leaders: shipping progress per tenant.
    pub shipping: ship::ShipBook,
    /// Woken when the reconciler changed a role, so a new primary asks for its
    /// write lease at once instead of at the next renewal round.
    pub renew_now: tokio::sync::Notify,
}

impl Geo {
    /// The roles of `group` (empty when this node holds no replica of it).
    pub fn roles(&self, group: GroupId) -> Roles {
        self.roles.get(&group).cloned().unwrap_or_default()
    }
}
