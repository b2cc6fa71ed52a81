//! The [`Client`]: connection setup, cluster discovery and the administrative calls
//! (tenants, containers, cluster status, tenant placement).
//!
//! Admin calls may go to any node (a node forwards directory writes to the directory
//! leader itself); on a transport failure the next known node is tried.

use crate::channels::Conn;
use crate::channels::{normalize_addr, Channels};
use crate::convert::redundancy_to_pb;
use crate::error::Error;
use crate::health::Unreachable;
use crate::model::{ClusterStatus, ContainerInfo, Placement, TenantInfo};
use crate::retry::{with_timeout, Failure, RetryClass};
use crate::routing::{PlacementCache, Route};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use stratus_core::{names, Redundancy};
use stratus_proto::v1 as pb;
use stratus_proto::v1::access_service_client::AccessServiceClient;
use stratus_proto::v1::admin_service_client::AdminServiceClient;
use stratus_proto::v1::key_service_client::KeyServiceClient;

/// How long discovery waits for a seed before asking the next one as well.
const SEED_STAGGER: Duration = Duration::from_millis(250);

/// Timeouts, backoff and deadline of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Overall time one operation may take across all its retries.
    pub deadline: Duration,
    /// Time to establish a TCP connection to one node.
    pub connect_timeout: Duration,
    /// Time one attempt of a unary call (head, list, admin) may take.
    pub request_timeout: Duration,
    /// Longest silence tolerated in the middle of a streaming transfer.
    pub stream_idle_timeout: Duration,
    /// First retry pause; doubles on each retry up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest retry pause.
    pub backoff_max: Duration,
    /// Opens connections in place of TCP (the simulation's network); `None`: TCP.
    pub dialer: Option<crate::channels::Dialer>,
    /// TLS towards every node, trusting the cluster CA. `None` is plaintext, which
    /// only a cluster run with `insecure_plaintext` (or the simulation) accepts.
    pub tls: Option<crate::TlsConfig>,
    /// Sent on every call (`authorization: Bearer ...`): a token or the operator
    /// secret. Every call but health checks needs one.
    pub credential: Option<crate::Credential>,
    /// Never send a write again once it may have reached a node: a put whose trailer
    /// was sent (or a delete whose request was) ends in `Error::OutcomeUnknown`
    /// instead of being retried. Each write then takes effect at most once, which
    /// callers that reason about histories (such as the simulation) need; by
    /// default an unconditional put is retried, since writing the same bytes again
    /// leaves the same content.
    pub at_most_once: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            dialer: None,
            tls: None,
            credential: None,
            at_most_once: false,
        }
    }
}

/// A handle on a Stratus cluster. Cheap to clone; clones share connections and the
/// placement cache, so many tasks can use one client concurrently.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    pub(crate) channels: Channels,
    /// Every known node address: the seeds first, then the discovered nodes.
    endpoints: RwLock<Vec<String>>,
    /// Index in `endpoints` of the node that last answered an admin call.
    preferred: AtomicUsize,
    /// Where the next eventual read starts among a group's members.
    rotation: AtomicUsize,
    pub(crate) placements: PlacementCache,
    /// Nodes that recently did not answer: every operation tries them last.
    pub(crate) unreachable: Unreachable,
}

impl Client {
    /// Connects to a cluster through any of `endpoints` (`host:port`) with the
    /// default [`ClientConfig`], and learns every node's address from the first
    /// endpoint that answers.
    pub async fn connect(endpoints: Vec<String>) -> Result<Client, Error> {
        Client::connect_with(endpoints, ClientConfig::default()).await
    }

    /// Like [`Client::connect`], with explicit timeouts and retry budget.
    pub async fn connect_with(
        endpoints: Vec<String>,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let client = Client::new_undiscovered(endpoints, config)?;
        client.discover().await?;
        Ok(client)
    }

    /// A client that knows only `endpoints` and has not contacted any node yet.
    pub(crate) fn new_undiscovered(
        endpoints: Vec<String>,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let mut seeds: Vec<String> = Vec::new();
        for e in endpoints.iter().map(|e| normalize_addr(e)) {
            if !e.is_empty() && !seeds.contains(&e) {
                seeds.push(e);
            }
        }
        if seeds.is_empty() {
            return Err(Error::config(
                "no endpoint given: pass at least one node address (host:port)",
            ));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                channels: Channels::new(
                    config.connect_timeout,
                    config.dialer.clone(),
                    config.tls.clone(),
                    config.credential.clone(),
                ),
                config,
                endpoints: RwLock::new(seeds),
                preferred: AtomicUsize::new(0),
                rotation: AtomicUsize::new(0),
                placements: PlacementCache::default(),
                unreachable: Unreachable::default(),
            }),
        })
    }

    /// Asks the seeds (staggered, see `ask_seeds`) for the cluster status and
    /// remembers every node.
    /// A cluster still starting (every seed answers Unavailable, such as while it
    /// sets up its credentials) is asked again with backoff until the deadline.
    async fn discover(&self) -> Result<(), Error> {
        let seeds = self.endpoints();
        let deadline = tokio::time::Instant::now() + self.inner.config.deadline;
        let mut pause = self.inner.config.backoff_initial;
        loop {
            let e = match self.ask_seeds(&seeds).await {
                Ok((addr, status)) => {
                    let nodes: Vec<String> = status.nodes.iter().map(|n| n.addr.clone()).collect();
                    tracing::debug!(%addr, nodes = nodes.len(), "discovered cluster");
                    self.add_endpoints(nodes);
                    if let Some(i) = seeds.iter().position(|s| *s == addr) {
                        self.inner.preferred.store(i, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let starting = matches!(e, Error::Unavailable { .. });
            if !starting || tokio::time::Instant::now() + pause >= deadline {
                return Err(e);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(self.inner.config.backoff_max);
        }
    }

    /// Asks the seeds for the cluster status, staggered: the first seed at once,
    /// each next one [`SEED_STAGGER`] later or as soon as an earlier one failed,
    /// whichever comes first; the first answer wins. A seed in a region that is
    /// down then costs the stagger, not a connect timeout. Returns the last
    /// failure when no seed answers.
    async fn ask_seeds(
        &self,
        seeds: &[String],
    ) -> Result<(String, pb::ClusterStatusResponse), Error> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let ask = |addr: String| async move {
            let call = async {
                let mut admin = self.inner.channels.admin(&addr)?;
                admin
                    .cluster_status(pb::ClusterStatusRequest {})
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| Error::from_status(&s, &addr))
            };
            let r = with_timeout(self.inner.config.request_timeout, &addr, call).await;
            (addr, r)
        };
        let mut waiting = seeds.iter().cloned();
        let mut asking = FuturesUnordered::new();
        let mut last = None;
        // Bounded: each turn starts a seed or ends an asked one.
        loop {
            let exhausted = match waiting.next() {
                Some(addr) => {
                    asking.push(ask(addr));
                    false
                }
                None => true,
            };
            if asking.is_empty() {
                break;
            }
            let stagger = tokio::time::sleep(SEED_STAGGER);
            tokio::select! {
                Some((addr, r)) = asking.next() => match r {
                    Ok(status) => {
                        self.note_reachable(&addr, true);
                        return Ok((addr, status));
                    }
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "seed did not answer");
                        if matches!(e, Error::Transport { .. }) {
                            self.note_reachable(&addr, false);
                        }
                        last = Some(e);
                    }
                },
                _ = stagger, if !exhausted => {}
            }
        }
        Err(last.unwrap_or_else(|| Error::config("no endpoint given")))
    }

    fn add_endpoints(&self, addrs: Vec<String>) {
        let mut list = self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for a in addrs.iter().map(|a| normalize_addr(a)) {
            if !a.is_empty() && !list.contains(&a) {
                list.push(a);
            }
        }
    }

    /// Every node address this client knows (seeds first).
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// An admin-service client for `addr`.
    pub(crate) fn admin_client(&self, addr: &str) -> Result<AdminServiceClient<Conn>, Error> {
        self.inner.channels.admin(addr)
    }

    /// Every known node in the order a call to any node tries them: from the one
    /// that last answered, with the nodes that recently did not answer last.
    pub(crate) fn endpoints_to_try(&self) -> Vec<String> {
        let mut list = self.endpoints();
        if !list.is_empty() {
            let start = self.inner.preferred.load(Ordering::Relaxed) % list.len();
            list.rotate_left(start);
        }
        self.inner.unreachable.order(&mut list);
        list
    }

    /// Remembers `addr` as the node that last answered a call to any node.
    pub(crate) fn set_preferred_addr(&self, addr: &str) {
        if let Some(i) = self.endpoints().iter().position(|a| a == addr) {
            self.inner.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Notes whether `addr` answered (`ok`) or could not be reached.
    pub(crate) fn note_reachable(&self, addr: &str, ok: bool) {
        if ok {
            self.inner.unreachable.clear(addr);
        } else {
            self.inner.unreachable.mark(addr);
        }
    }

    /// A different starting member for each eventual read.
    pub(crate) fn next_rotation(&self) -> usize {
        self.inner.rotation.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Runs a unary admin call on any node, with retries of class `class`.
    pub(crate) async fn admin<T, F, Fut>(
        &self,
        op: &'static str,
        class: RetryClass,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(AdminServiceClient<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_node_call(op, class, Channels::admin, call).await
    }

    /// Runs a unary key-service call on any node, with retries of class `class`.
    pub(crate) async fn keys_call<T, F, Fut>(
        &self,
        op: &'static str,
        class: RetryClass,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(KeyServiceClient<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_node_call(op, class, Channels::keys, call).await
    }

    /// Runs a unary access-service call on any node, with retries of class `class`.
    pub(crate) async fn access_call<T, F, Fut>(
        &self,
        op: &'static str,
        class: RetryClass,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(AccessServiceClient<Conn>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_node_call(op, class, Channels::access, call).await
    }

    /// Runs a unary call on any node through the service client `connect` makes
    /// for an address, within the request timeout, with retries of class `class`.
    async fn any_node_call<C, T, F, Fut>(
        &self,
        op: &'static str,
        class: RetryClass,
        connect: fn(&Channels, &str) -> Result<C, Error>,
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(C) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.inner.config.request_timeout;
        self.routed(Route::Any, op, |addr, remaining| {
            let client = connect(&self.inner.channels, &addr);
            let fut = client.map(&call);
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

    /// Creates a tenant in `region` with redundancy class `redundancy`, with purge
    /// protection on its keys.
    ///
    /// Retried on not-leader and transport failures; if a retry answers
    /// [`Error::AlreadyExists`], the first attempt may have created the tenant.
    pub async fn create_tenant(
        &self,
        name: &str,
        region: &str,
        redundancy: Redundancy,
    ) -> Result<TenantInfo, Error> {
        self.create_tenant_with(name, region, redundancy, true)
            .await
    }

    /// [`Client::create_tenant`], choosing whether purge protection holds the
    /// tenant's deleted keys until their retention ends.
    pub async fn create_tenant_with(
        &self,
        name: &str,
        region: &str,
        redundancy: Redundancy,
        purge_protection: bool,
    ) -> Result<TenantInfo, Error> {
        names::validate_tenant(name).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::CreateTenantRequest {
            name: name.to_owned(),
            region: region.to_owned(),
            redundancy: redundancy_to_pb(redundancy) as i32,
            disable_purge_protection: !purge_protection,
        };
        let t = self
            .admin("create tenant", RetryClass::Create, |mut c| {
                let req = req.clone();
                async move { c.create_tenant(req).await }
            })
            .await?;
        Ok(t.into())
    }

    /// Every tenant.
    pub async fn list_tenants(&self) -> Result<Vec<TenantInfo>, Error> {
        let r = self
            .admin("list tenants", RetryClass::Read, |mut c| async move {
                c.list_tenants(pb::ListTenantsRequest {}).await
            })
            .await?;
        Ok(r.tenants.into_iter().map(Into::into).collect())
    }

    /// One tenant.
    pub async fn get_tenant(&self, name: &str) -> Result<TenantInfo, Error> {
        names::validate_tenant(name).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::GetTenantRequest {
            name: name.to_owned(),
        };
        let t = self
            .admin("get tenant", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.get_tenant(req).await }
            })
            .await?;
        Ok(t.into())
    }

    /// Deletes a tenant; it must have no containers left.
    pub async fn delete_tenant(&self, name: &str) -> Result<(), Error> {
        names::validate_tenant(name).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::DeleteTenantRequest {
            name: name.to_owned(),
        };
        self.admin("delete tenant", RetryClass::Mutation, |mut c| {
            let req = req.clone();
            async move { c.delete_tenant(req).await }
        })
        .await?;
        self.inner.placements.remove(name);
        Ok(())
    }

    /// Creates a container. Same retry note as [`Client::create_tenant`].
    pub async fn create_container(&self, tenant: &str, name: &str) -> Result<ContainerInfo, Error> {
        validate_container_path(tenant, name)?;
        let req = pb::CreateContainerRequest {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        let c = self
            .admin("create container", RetryClass::Create, |mut c| {
                let req = req.clone();
                async move { c.create_container(req).await }
            })
            .await?;
        Ok(c.into())
    }

    /// Every container of a tenant.
    pub async fn list_containers(&self, tenant: &str) -> Result<Vec<ContainerInfo>, Error> {
        names::validate_tenant(tenant).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::ListContainersRequest {
            tenant: tenant.to_owned(),
        };
        let r = self
            .admin("list containers", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.list_containers(req).await }
            })
            .await?;
        Ok(r.containers.into_iter().map(Into::into).collect())
    }

    /// Deletes a container.
    pub async fn delete_container(&self, tenant: &str, name: &str) -> Result<(), Error> {
        validate_container_path(tenant, name)?;
        let req = pb::DeleteContainerRequest {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        self.admin("delete container", RetryClass::Mutation, |mut c| {
            let req = req.clone();
            async move { c.delete_container(req).await }
        })
        .await?;
        Ok(())
    }

    /// The cluster as the answering node sees it: topology, node health, groups.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let r = self
            .admin("cluster status", RetryClass::Read, |mut c| async move {
                c.cluster_status(pb::ClusterStatusRequest {}).await
            })
            .await?;
        Ok(r.into())
    }

    /// The metrics of the node at `addr` (Prometheus text format), asked of that
    /// node alone: no retry on another node, since the answer is that node's.
    pub async fn node_metrics(&self, addr: &str) -> Result<(u64, String), Error> {
        let mut admin = self.inner.channels.admin(addr)?;
        let call = async {
            admin
                .metrics(pb::MetricsRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| Error::from_status(&s, addr))
        };
        let r = with_timeout(self.inner.config.request_timeout, addr, call).await?;
        Ok((r.node_id, r.text))
    }

    /// Where a tenant's replica group lives and who leads it, asked fresh (the
    /// answer also refreshes the client's placement cache).
    pub async fn resolve_tenant(&self, tenant: &str) -> Result<Placement, Error> {
        names::validate_tenant(tenant).map_err(|e| Error::invalid(e.to_string()))?;
        let req = pb::ResolveTenantRequest {
            tenant: tenant.to_owned(),
        };
        let p: Placement = self
            .admin("resolve tenant", RetryClass::Read, |mut c| {
                let req = req.clone();
                async move { c.resolve_tenant(req).await }
            })
            .await?
            .into();
        if p.members.is_empty() {
            return Err(Error::Unavailable {
                message: format!("tenant {tenant:?} has no replica group yet"),
                code: None,
            });
        }
        self.inner.placements.insert(p.clone());
        Ok(p)
    }
}

/// Validates a tenant and container name pair before any request is sent.
pub(crate) fn validate_container_path(tenant: &str, container: &str) -> Result<(), Error> {
    names::validate_tenant(tenant).map_err(|e| Error::invalid(e.to_string()))?;
    names::validate_container(container).map_err(|e| Error::invalid(e.to_string()))
}
