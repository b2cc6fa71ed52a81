//! Unary object operations: head, delete and listing.

use crate::client::{validate_container_path, Client};
use crate::convert::consistency_to_pb;
use crate::error::Error;
use crate::model::{Consistency, ListPage, ObjectInfo};
use crate::retry::{with_timeout, Failure, RetryClass};
use crate::routing::Route;
use stratus_core::limits::LIST_PAGE_MAX;
use stratus_core::names;
use stratus_proto::v1 as pb;
use stratus_proto::v1::object_service_client::ObjectServiceClient;

/// Validates a full object path before any request is sent.
pub(crate) fn validate_object_path(tenant: &str, container: &str, key: &str) -> Result<(), Error> {
    validate_container_path(tenant, container)?;
    names::validate_key(key).map_err(|e| Error::invalid(e.to_string()))
}

impl Client {
    /// Runs a unary object call at the tenant's group leader, with retries of class `class`.
    pub(crate) async fn object_unary<T, F, Fut>(
        &self,
        route: Route<'_>,
        op: &'static str,
        class: RetryClass,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(ObjectServiceClient<crate::channels::Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.config().request_timeout;
        self.routed(route, op, |addr, remaining| {
            let fut = self.inner.channels.objects(&addr).map(&call);
            async move {
                let fut = fut.map_err(Failure::Fatal)?;
                let attempt = async {
                    fut.await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| Error::from_status(&s, &addr))
                };
                with_timeout(timeout.min(remaining), &addr, attempt)
                    .await
                    .map_err(|e| Failure::classify(e, class))
            }
        })
        .await
    }

    /// An object's metadata (linearizable read).
    pub async fn head(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
    ) -> Result<ObjectInfo, Error> {
        self.head_with(tenant, container, key, Consistency::Strong)
            .await
    }

    /// An object's metadata with an explicit read consistency.
    pub async fn head_with(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<ObjectInfo, Error> {
        validate_object_path(tenant, container, key)?;
        let req = pb::HeadRequest {
            tenant: tenant.to_owned(),
            container: container.to_owned(),
            key: key.to_owned(),
            consistency: consistency_to_pb(consistency),
        };
        let info = self
            .object_unary(
                Route::read(tenant, consistency),
                "head",
                RetryClass::Read,
                |mut c| {
                    let req = req.clone();
                    async move { c.head_object(req).await }
                },
            )
            .await?;
        Ok(info.into())
    }

    /// Deletes an object, only if its ETag is `if_match` when given. Returns the
    /// deleted version id. Retried only when the node provably did nothing
    /// (not-leader, or the request could not be sent).
    pub async fn delete(
        &self,
        tenant: &str,
        container: &str,
        key: &str,
        if_match: Option<&str>,
    ) -> Result<String, Error> {
        validate_object_path(tenant, container, key)?;
        let req = pb::DeleteRequest {
            tenant: tenant.to_owned(),
            container: container.to_owned(),
            key: key.to_owned(),
            if_match: if_match.map(str::to_owned),
        };
        let r = self
            .object_unary(
                Route::Tenant(tenant),
                "delete",
                RetryClass::Mutation,
                |mut c| {
                    let req = req.clone();
                    async move { c.delete_object(req).await }
                },
            )
            .await?;
        Ok(r.version_id)
    }

    /// One page of the objects whose key starts with `prefix`, in key order.
    /// `page_size` 0 means the server's default; `continuation` is the previous
    /// page's `next_continuation`.
    pub async fn list(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<ListPage, Error> {
        self.list_with(
            tenant,
            container,
            prefix,
            page_size,
            continuation,
            Consistency::Strong,
        )
        .await
    }

    /// [`Client::list`] with an explicit read consistency.
    pub async fn list_with(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
        page_size: u32,
        continuation: Option<&str>,
        consistency: Consistency,
    ) -> Result<ListPage, Error> {
        validate_container_path(tenant, container)?;
        if page_size > LIST_PAGE_MAX {
            return Err(Error::invalid(format!(
                "page size {page_size} is over the maximum of {LIST_PAGE_MAX}"
            )));
        }
        let req = pb::ListRequest {
            tenant: tenant.to_owned(),
            container: container.to_owned(),
            prefix: prefix.to_owned(),
            page_size,
            continuation_token: continuation.unwrap_or_default().to_owned(),
            consistency: consistency_to_pb(consistency),
        };
        let r = self
            .object_unary(
                Route::read(tenant, consistency),
                "list",
                RetryClass::Read,
                |mut c| {
                    let req = req.clone();
                    async move { c.list_objects(req).await }
                },
            )
            .await?;
        Ok(ListPage {
            objects: r.objects.into_iter().map(Into::into).collect(),
            next_continuation: Some(r.next_continuation_token).filter(|t| !t.is_empty()),
        })
    }

    /// Every object whose key starts with `prefix`, following continuation tokens.
    pub async fn list_all(
        &self,
        tenant: &str,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectInfo>, Error> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list(tenant, container, prefix, 0, token.as_deref())
                .await?;
            all.extend(page.objects);
            match page.next_continuation {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                Some(_) => {
                    return Err(Error::Other {
                        grpc_code: tonic::Code::Internal,
                        message: "the server returned the same continuation token twice".into(),
                        code: None,
                    })
                }
                None => return Ok(all),
            }
        }
    }
}
