//! A tenant's geo status as `stratus tenant show` reports it: asked of the primary
//! group's leader (its role, outbox position and shipping progress), or, when the
//! primary cannot be reached, of the secondary (what it applied, and as of when).

use super::ship::UNAVAILABLE_AFTER_MS;
use crate::directory::TenantRecord;
use crate::error::NodeResult;
use crate::forward::{GroupAnswer, GroupQuery};
use crate::node::StratusNode;
use crate::objects::geo::TenantRole;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use stratus_core::placement::GroupId;
use stratus_proto::v1 as pb;

/// How long `tenant show` waits for each group's answer.
const STATUS_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// One group's view of a tenant's geo-replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoView {
    pub role: TenantRole,
    /// The leader's shipping progress (primaries only).
    pub applied: Option<u64>,
    pub last_sync_ms: u64,
    pub last_ok_ms: u64,
    pub last_error: Option<String>,
    /// A seed in progress: objects copied, of how many.
    pub seed: Option<(u64, u64)>,
}

/// The view of `tenant` in `group`, on its leader.
pub fn answer(node: &StratusNode, group: GroupId, tenant: &str) -> GeoView {
    let role = node.geo.roles(group).get(tenant);
    let progress = node
        .geo
        .shipping
        .get(tenant)
        .filter(|p| p.group == group && p.epoch == role.epoch());
    let role_sync = match &role {
        TenantRole::Primary { last_sync_ms, .. } => *last_sync_ms,
        TenantRole::Secondary { as_of_ms, .. } => *as_of_ms,
        TenantRole::Fenced { .. } => 0,
    };
    GeoView {
        applied: progress.as_ref().map(|p| p.applied),
        last_sync_ms: progress
            .as_ref()
            .map_or(role_sync, |p| p.last_sync_ms.max(role_sync)),
        last_ok_ms: progress.as_ref().map_or(0, |p| p.last_ok_ms),
        last_error: progress.as_ref().and_then(|p| p.last_error.clone()),
        seed: progress
            .as_ref()
            .and_then(|p| p.seeding.as_ref().map(|s| (s.done, s.total))),
        role,
    }
}

/// Asks `group`'s leader for its view of `tenant`, within a bound.
pub async fn view(node: &StratusNode, group: GroupId, tenant: &str) -> NodeResult<GeoView> {
    let query = GroupQuery::GeoStatus {
        tenant: tenant.to_string(),
    };
    match tokio::time::timeout(STATUS_QUERY_TIMEOUT, node.query(group, query)).await {
        Ok(Ok(GroupAnswer::Geo(v))) => Ok(v),
        Ok(Ok(other)) => Err(crate::error::NodeError::Internal(format!(
            "unexpected answer {other:?}"
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(crate::error::NodeError::Unavailable(format!(
            "group {group} did not answer within {}s",
            STATUS_QUERY_TIMEOUT.as_secs()
        ))),
    }
}

/// The wire geo status of a geo-redundant tenant (`None` for the others).
pub async fn geo_info(node: &StratusNode, record: &TenantRecord) -> Option<pb::GeoInfo> {
    let secondary = record.secondary.as_ref()?;
    let now_ms = node.clock.now_ms();
    let mut info = pb::GeoInfo {
        secondary_region: secondary.region.clone(),
        secondary_group_id: secondary.group,
        ..pb::GeoInfo::default()
    };
    let lag = |last_sync_ms: u64| {
        if last_sync_ms == 0 {
            0.0
        } else {
            now_ms.saturating_sub(last_sync_ms) as f64 / 1000.0
        }
    };
    match view(node, record.group, &record.name).await {
        Ok(v) => {
            let (head, role_seeded) = match &v.role {
                TenantRole::Primary {
                    next_seq,
                    acked_seq,
                    seeded,
                    ..
                } => (
                    next_seq - 1,
                    *seeded && v.applied.unwrap_or(*acked_seq) >= *acked_seq,
                ),
                _ => (0, false),
            };
            let applied = v.applied.unwrap_or(match &v.role {
                TenantRole::Primary { acked_seq, .. } => *acked_seq,
                _ => 0,
            });
            info.status = if !secondary.seeded || !role_seeded {
                "bootstrapping"
            } else if now_ms.saturating_sub(v.last_ok_ms) > UNAVAILABLE_AFTER_MS {
                "unavailable"
            } else {
                "live"
            }
            .into();
            info.last_sync_ms = v.last_sync_ms;
            info.lag_seconds = lag(v.last_sync_ms);
            info.lag_operations = head.saturating_sub(applied);
            if let Some((done, total)) = v.seed {
                info.seed_objects_done = done;
                info.seed_objects_total = total;
            }
            info.source = "primary".into();
        }
        Err(primary_error) => {
            tracing::debug!(tenant = %record.name, error = %primary_error, "geo status: primary unreachable; asking the secondary");
            info.status = "unavailable".into();
            if let Ok(v) = view(node, secondary.group, &record.name).await {
                info.last_sync_ms = v.last_sync_ms;
                info.lag_seconds = lag(v.last_sync_ms);
                info.source = "secondary".into();
            }
        }
    }
    Some(info)
}
