//! Conversions between domain types and the wire (`stratus.v1`), in one place.

use crate::directory::geo::{FailoverRecord, Reprotect};
use crate::directory::TenantRecord;
use crate::error::NodeError;
use crate::objects::{ContainerRecord, ObjectId, ObjectMeta};
use stratus_core::Redundancy;
use stratus_proto::v1 as pb;

pub fn redundancy_to_wire(r: Redundancy) -> pb::Redundancy {
    match r {
        Redundancy::Lrs => pb::Redundancy::Lrs,
        Redundancy::Zrs => pb::Redundancy::Zrs,
        Redundancy::Grs => pb::Redundancy::Grs,
        Redundancy::RaGrs => pb::Redundancy::RaGrs,
        Redundancy::Gzrs => pb::Redundancy::Gzrs,
        Redundancy::RaGzrs => pb::Redundancy::RaGzrs,
    }
}

/// The class on the wire; `None` for unspecified.
pub fn redundancy_from_wire_opt(value: i32) -> Result<Option<Redundancy>, NodeError> {
    match pb::Redundancy::try_from(value) {
        Ok(pb::Redundancy::Unspecified) => Ok(None),
        Ok(pb::Redundancy::Lrs) => Ok(Some(Redundancy::Lrs)),
        Ok(pb::Redundancy::Zrs) => Ok(Some(Redundancy::Zrs)),
        Ok(pb::Redundancy::Grs) => Ok(Some(Redundancy::Grs)),
        Ok(pb::Redundancy::RaGrs) => Ok(Some(Redundancy::RaGrs)),
        Ok(pb::Redundancy::Gzrs) => Ok(Some(Redundancy::Gzrs)),
        Ok(pb::Redundancy::RaGzrs) => Ok(Some(Redundancy::RaGzrs)),
        Err(_) => Err(NodeError::InvalidArgument(format!(
            "redundancy {value} is not a known class: use LRS, ZRS, GRS, RA-GRS, GZRS or RA-GZRS"
        ))),
    }
}

pub fn redundancy_from_wire(value: i32) -> Result<Redundancy, NodeError> {
    redundancy_from_wire_opt(value)?.ok_or_else(|| {
        NodeError::InvalidArgument(
            "a redundancy class is required: LRS, ZRS, GRS, RA-GRS, GZRS or RA-GZRS".into(),
        )
    })
}

/// The tenant as the directory records it; `geo` (live figures from the groups)
/// is filled in by the admin service where it asks for them.
pub fn tenant(t: &TenantRecord) -> pb::Tenant {
    pb::Tenant {
        name: t.name.clone(),
        region: t.region.clone(),
        redundancy: redundancy_to_wire(t.redundancy) as i32,
        status: t.status.as_str().to_string(),
        group_id: t.group,
        created_at_ms: t.created_ms,
        epoch: t.epoch,
        geo: t.secondary.as_ref().map(|s| pb::GeoInfo {
            secondary_region: s.region.clone(),
            secondary_group_id: s.group,
            status: if s.seeded { "live" } else { "bootstrapping" }.into(),
            ..pb::GeoInfo::default()
        }),
        failovers: t.failovers.iter().map(failover).collect(),
        auto_failover_after_s: t.auto_failover_after_ms.map_or(0, |ms| ms / 1000),
    }
}

pub fn failover(f: &FailoverRecord) -> pb::FailoverInfo {
    let (recovery_container, recovered_objects) = match &f.reprotect {
        Reprotect::Done {
            recovery_container,
            recovered_objects,
        } => (
            recovery_container.clone().unwrap_or_default(),
            *recovered_objects,
        ),
        _ => (String::new(), 0),
    };
    pb::FailoverInfo {
        epoch: f.epoch,
        planned: f.planned,
        at_ms: f.at_ms,
        from_region: f.from_region.clone(),
        from_group_id: f.from_group,
        to_region: f.to_region.clone(),
        to_group_id: f.to_group,
        last_sync_ms: f.last_sync_ms,
        lost_operations_max: f.lost_ops_max,
        reprotect: f.reprotect.as_str().into(),
        recovery_container,
        recovered_objects,
    }
}

pub fn container(c: &ContainerRecord) -> pb::Container {
    pb::Container {
        tenant: c.tenant.clone(),
        name: c.name.clone(),
        created_at_ms: c.created_ms,
    }
}

pub fn object_info(id: &ObjectId, meta: &ObjectMeta) -> pb::ObjectInfo {
    pb::ObjectInfo {
        tenant: id.tenant.clone(),
        container: id.container.clone(),
        key: id.key.clone(),
        size: meta.size,
        crc32: meta.crc32,
        etag: meta.etag(),
        version_id: format!("{:032x}", meta.version),
        content_type: meta.content_type.clone(),
        metadata: meta.metadata.clone().into_iter().collect(),
        created_at_ms: meta.created_ms,
        modified_at_ms: meta.modified_ms,
        last_sync_ms: None,
    }
}
