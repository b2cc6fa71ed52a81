//! Conversions between domain types and the wire (`stratus.v1`), in one place.

use crate::directory::TenantRecord;
use crate::error::NodeError;
use crate::objects::{ContainerRecord, ObjectId, ObjectMeta};
use stratus_core::Redundancy;
use stratus_proto::v1 as pb;

pub fn redundancy_to_wire(r: Redundancy) -> pb::Redundancy {
    match r {
        Redundancy::Lrs => pb::Redundancy::Lrs,
        Redundancy::Zrs => pb::Redundancy::Zrs,
    }
}

pub fn redundancy_from_wire(value: i32) -> Result<Redundancy, NodeError> {
    match pb::Redundancy::try_from(value) {
        Ok(pb::Redundancy::Lrs) => Ok(Redundancy::Lrs),
        Ok(pb::Redundancy::Zrs) => Ok(Redundancy::Zrs),
        _ => Err(NodeError::InvalidArgument(format!(
            "redundancy {value} is not a known class: use LRS or ZRS"
        ))),
    }
}

pub fn tenant(t: &TenantRecord) -> pb::Tenant {
    pb::Tenant {
        name: t.name.clone(),
        region: t.region.clone(),
        redundancy: redundancy_to_wire(t.redundancy) as i32,
        status: t.status.as_str().to_string(),
        group_id: t.group,
        created_at_ms: t.created_ms,
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
    }
}
