//! Geo-redundancy through the SDK: changing a tenant's class or automatic-failover
//! policy, failing over, and re-protecting after an unplanned failover.

use crate::client::Client;
use crate::convert::redundancy_to_pb;
use crate::error::Error;
use crate::model::{FailoverInfo, TenantInfo};
use crate::retry::{with_timeout, RetryClass};
use std::time::Duration;
use stratus_core::{names, Redundancy};
use stratus_proto::v1 as pb;

/// How long a failover or reprotect may take: the old primary's write lease is
/// waited out, a planned failover drains shipping, a reprotect copies what the old
/// primary never shipped.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// The node's error code for "I cannot reach the directory's leader".
const DIRECTORY_UNREACHABLE_CODE: &str = "directory-unreachable";

/// What `update_tenant` changes.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    /// A new class (same local part: LRS ↔ GRS/RA-GRS, ZRS ↔ GZRS/RA-GZRS).
    pub redundancy: Option<Redundancy>,
    /// `Some(None)` turns automatic failover off; `Some(Some(d))` fails over by
    /// itself after the primary region was unreachable for `d`.
    pub auto_failover_after: Option<Option<Duration>>,
}

fn check_tenant(name: &str) -> Result<(), Error> {
    names::validate_tenant(name).map_err(|e| Error::invalid(e.to_string()))
}

impl Client {
    /// Changes a tenant's redundancy class and/or automatic-failover policy.
    /// Adding a geo copy seeds the secondary in the background (`tenant show`
    /// reports its progress); removing it stops shipping and frees the copy.
    pub async fn update_tenant(
        &self,
        name: &str,
        update: TenantUpdate,
    ) -> Result<TenantInfo, Error> {
        check_tenant(name)?;
        let req = pb::UpdateTenantRequest {
            name: name.to_owned(),
            redundancy: update
                .redundancy
                .map_or(pb::Redundancy::Unspecified, redundancy_to_pb)
                as i32,
            auto_failover_after_s: update
                .auto_failover_after
                .map(|d| d.map_or(0, |d| d.as_secs().max(1))),
        };
        let t = self
            .admin("update tenant", RetryClass::Mutation, |mut c| {
                let req = req.clone();
                async move { c.update_tenant(req).await }
            })
            .await?;
        Ok(t.into())
    }

    /// Makes the tenant's secondary region primary. Unplanned (`planned` false):
    /// only while the primary region is unreachable; reports the loss window.
    /// Planned: drains shipping first and loses nothing. Sent once, never retried
    /// (a second attempt would find the first under way).
    pub async fn failover(
        &self,
        tenant: &str,
        planned: bool,
    ) -> Result<(TenantInfo, FailoverInfo), Error> {
        check_tenant(tenant)?;
        let req = pb::FailoverRequest {
            tenant: tenant.to_owned(),
            planned,
        };
        let r = self
            .long_admin_call(|mut c| {
                let req = req.clone();
                async move { c.failover(req).await }
            })
            .await?;
        let t = r.tenant.ok_or_else(|| Error::Other {
            grpc_code: tonic::Code::Internal,
            message: "the failover answer carries no tenant".into(),
            code: None,
        })?;
        let f = r.failover.ok_or_else(|| Error::Other {
            grpc_code: tonic::Code::Internal,
            message: "the failover answer carries no failover record".into(),
            code: None,
        })?;
        Ok((t.into(), f.into()))
    }

    /// After an unplanned failover, once the old region is back: keeps the writes
    /// the old primary never shipped in a recovery container, then re-seeds the
    /// old region as the new secondary.
    pub async fn reprotect(&self, tenant: &str) -> Result<TenantInfo, Error> {
        check_tenant(tenant)?;
        let req = pb::ReprotectRequest {
            tenant: tenant.to_owned(),
        };
        let t = self
            .long_admin_call(|mut c| {
                let req = req.clone();
                async move { c.reprotect(req).await }
            })
            .await?;
        Ok(t.into())
    }

    /// A long admin call, sent once, within [`FAILOVER_TIMEOUT`]: to the first node
    /// that accepts a connection and reaches the directory (a failover is asked for
    /// while a region is down or cut off, so the first endpoints may not answer, or
    /// answer that they cannot reach the directory).
    async fn long_admin_call<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: Fn(pb::admin_service_client::AdminServiceClient<crate::channels::Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = None;
        for addr in &self.endpoints_to_try() {
            let client = self.admin_client(addr)?;
            let attempt = async {
                call(client)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| Error::from_status(&s, addr))
            };
            match with_timeout(FAILOVER_TIMEOUT, addr, attempt).await {
                Err(e @ Error::Transport { sent: false, .. }) => {
                    self.note_reachable(addr, false);
                    last = Some(e);
                }
                // That node is cut off from the directory (with a failed region,
                // say): the failover was not begun, another node may do it.
                Err(e) if e.code() == Some(DIRECTORY_UNREACHABLE_CODE) => last = Some(e),
                other => {
                    if other.is_ok() {
                        self.note_reachable(addr, true);
                        self.set_preferred_addr(addr);
                    }
                    return other;
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::config("no endpoint to send the request to")))
    }
}
