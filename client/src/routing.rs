//! Where each attempt of an operation goes.
//!
//! Object operations go to the leader of the tenant's replica group: the placement
//! (members and leader) comes from `ResolveTenant` and is cached per tenant. A
//! `not-leader` answer names the leader when the node knows it; the next attempt
//! goes there at once. Without a hint, or when a member cannot be reached, the next
//! member is tried, and after a full round the placement is resolved again. Admin
//! calls rotate over every known node.

use crate::client::Client;
use crate::error::Error;
use crate::model::Placement;
use crate::retry::{Attempts, Failure};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::RwLock;
use std::time::Duration;

/// Stable code a node sends when a tenant does not exist (or not in this group):
/// with a cached placement it may mean the placement is stale.
const TENANT_NOT_FOUND_CODE: &str = "tenant-not-found";

/// Cached placements by tenant name.
#[derive(Debug, Default)]
pub(crate) struct PlacementCache {
    by_tenant: RwLock<HashMap<String, Placement>>,
    /// Members found unreachable since the tenant's placement was resolved.
    unreachable: RwLock<HashMap<String, HashSet<String>>>,
}

impl PlacementCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Placement>> {
        self.by_tenant
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Placement>> {
        self.by_tenant
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, tenant: &str) -> Option<Placement> {
        self.read().get(tenant).cloned()
    }

    fn unreachable(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HashSet<String>>> {
        self.unreachable
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, p: Placement) {
        self.unreachable().remove(&p.tenant);
        self.write().insert(p.tenant.clone(), p);
    }

    pub(crate) fn remove(&self, tenant: &str) {
        self.unreachable().remove(tenant);
        self.write().remove(tenant);
    }

    /// Forgets `addr` as the tenant's leader after it could not be reached, and
    /// moves it to the back of the members, so the next operation asks another
    /// member first (which names the new leader) instead of waiting out the same
    /// timeout again on a crashed or cut-off node.
    ///
    /// Once every member was found unreachable the placement is dropped, so the
    /// next operation resolves the tenant again. Without that, an at-most-once put
    /// (which ends at its first uncertain attempt) never got past the members of
    /// a primary region that died: after a failover the clients kept rotating
    /// through the dead members until that region came back (found by the
    /// simulation's region-failover scenario).
    fn forget_unreachable(&self, tenant: &str, addr: &str) {
        let is_member = self
            .get(tenant)
            .is_some_and(|p| p.members.iter().any(|m| m.addr == addr));
        if is_member {
            let all_down = {
                let mut u = self.unreachable();
                let set = u.entry(tenant.to_owned()).or_default();
                set.insert(addr.to_owned());
                self.get(tenant)
                    .is_some_and(|p| p.members.iter().all(|m| set.contains(&m.addr)))
            };
            if all_down {
                self.remove(tenant);
                return;
            }
        }
        if let Some(p) = self.write().get_mut(tenant) {
            if p.leader_addr.as_deref() == Some(addr) {
                p.leader_addr = None;
                p.leader_id = None;
            }
            if let Some(i) = p.members.iter().position(|m| m.addr == addr) {
                let m = p.members.remove(i);
                p.members.push(m);
            }
        }
    }

    /// Records `addr` as the tenant's leader (from a hint or a successful call).
    fn set_leader(&self, tenant: &str, addr: &str) {
        if let Some(p) = self.write().get_mut(tenant) {
            if p.leader_addr.as_deref() != Some(addr) {
                p.leader_id = p.members.iter().find(|m| m.addr == addr).map(|m| m.node_id);
                p.leader_addr = Some(addr.to_owned());
            }
        }
    }
}

/// Who may serve an operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route<'a> {
    /// Any node (admin calls).
    Any,
    /// The leader of this tenant's replica group.
    Tenant(&'a str),
    /// Any member of this tenant's replica group (eventual reads): members are
    /// tried in an order that rotates from call to call, spreading the load.
    Replica(&'a str),
    /// Any member of this tenant's secondary group (reads from the geo copy),
    /// rotating like `Replica`.
    Secondary(&'a str),
}

impl<'a> Route<'a> {
    /// The route of a read with `consistency` on `tenant`.
    pub(crate) fn read(tenant: &'a str, consistency: crate::Consistency) -> Route<'a> {
        match consistency {
            crate::Consistency::Strong => Route::Tenant(tenant),
            crate::Consistency::Eventual => Route::Replica(tenant),
            crate::Consistency::Secondary => Route::Secondary(tenant),
        }
    }

    fn tenant(self) -> Option<&'a str> {
        match self {
            Route::Any => None,
            Route::Tenant(t) | Route::Replica(t) | Route::Secondary(t) => Some(t),
        }
    }
}

/// The addresses an operation tries, in order, and where it stands.
struct Cursor<'a> {
    route: Route<'a>,
    addrs: Vec<String>,
    index: usize,
    /// A leader hint to try next, ahead of `addrs`.
    hint: Option<String>,
    /// Whether `addrs` came from the cache (and may be stale).
    from_cache: bool,
    /// Members tried since the placement was last resolved.
    tried: usize,
}

/// Orders members leader first.
fn placement_addrs(p: &Placement) -> Vec<String> {
    let mut addrs: Vec<String> = p.leader_addr.iter().cloned().collect();
    for m in &p.members {
        if !addrs.contains(&m.addr) {
            addrs.push(m.addr.clone());
        }
    }
    addrs
}

/// The addresses a route to the tenant tries: its group (leader first), or the
/// members of its secondary group. A tenant without one gets its primary's
/// members, whose answer says why the read is refused.
fn route_addrs(p: &Placement, secondary: bool) -> Vec<String> {
    if secondary && !p.secondary_members.is_empty() {
        return p.secondary_members.iter().map(|m| m.addr.clone()).collect();
    }
    placement_addrs(p)
}

impl<'a> Cursor<'a> {
    async fn new(client: &Client, route: Route<'a>) -> Result<Cursor<'a>, Error> {
        let (addrs, index, from_cache) = match route {
            Route::Any => (client.endpoints_to_try(), 0, false),
            Route::Tenant(tenant) | Route::Replica(tenant) | Route::Secondary(tenant) => {
                let secondary = matches!(route, Route::Secondary(_));
                let (mut addrs, from_cache) = match client.inner.placements.get(tenant) {
                    Some(p) => (route_addrs(&p, secondary), true),
                    None => (
                        route_addrs(&client.resolve_boxed(tenant).await?, secondary),
                        false,
                    ),
                };
                client.inner.unreachable.order(&mut addrs);
                let start = match route {
                    Route::Replica(_) | Route::Secondary(_) => client.next_rotation(),
                    _ => 0,
                };
                (addrs, start, from_cache)
            }
        };
        Ok(Cursor {
            route,
            addrs,
            index,
            hint: None,
            from_cache,
            tried: 0,
        })
    }

    fn current(&self) -> String {
        match &self.hint {
            Some(h) => h.clone(),
            None => self.addrs[self.index % self.addrs.len()].clone(),
        }
    }

    fn succeeded(&self, client: &Client, addr: &str) {
        client.note_reachable(addr, true);
        match self.route {
            Route::Any if self.hint.is_none() => client.set_preferred_addr(addr),
            Route::Any | Route::Replica(_) | Route::Secondary(_) => {}
            Route::Tenant(tenant) => client.inner.placements.set_leader(tenant, addr),
        }
    }

    /// Notes that `addr` did not answer, so later operations start elsewhere.
    fn unreachable(&self, client: &Client, addr: &str, e: &Error) {
        let cause = match e {
            Error::OutcomeUnknown { cause, .. } => cause.as_ref(),
            other => other,
        };
        if let Error::Transport { .. } = cause {
            client.note_reachable(addr, false);
            client.inner.channels.reset(addr);
            if let Some(tenant) = self.route.tenant() {
                client.inner.placements.forget_unreachable(tenant, addr);
            }
        }
    }

    /// Whether `e`, which is not retryable by itself, says a cached placement is stale.
    fn is_stale_placement(&self, e: &Error) -> bool {
        self.route.tenant().is_some() && self.from_cache && e.code() == Some(TENANT_NOT_FOUND_CODE)
    }

    /// Resolves the tenant's placement again (after a full round of failures or a
    /// stale-placement answer). Keeps the old addresses if that fails.
    async fn refresh(&mut self, client: &Client) {
        let Some(tenant) = self.route.tenant() else {
            self.addrs = client.endpoints_to_try();
            self.index = 0;
            return;
        };
        client.inner.placements.remove(tenant);
        match client.resolve_boxed(tenant).await {
            Ok(p) => {
                self.addrs = route_addrs(&p, matches!(self.route, Route::Secondary(_)));
                client.inner.unreachable.order(&mut self.addrs);
                self.index = 0;
                self.from_cache = false;
            }
            Err(e) => tracing::debug!(tenant, error = %e, "re-resolving placement failed"),
        }
        self.tried = 0;
    }

    /// After a probe of the tenant's members: starts again from the first member
    /// of the cached placement that answered (members that did not come last), or
    /// resolves the tenant again when the probe found every member silent (the
    /// placement is then gone from the cache).
    async fn reload(&mut self, client: &Client) {
        let Some(tenant) = self.route.tenant() else {
            return;
        };
        match client.inner.placements.get(tenant) {
            Some(p) => {
                self.addrs = route_addrs(&p, matches!(self.route, Route::Secondary(_)));
                client.inner.unreachable.order(&mut self.addrs);
                self.index = 0;
                self.hint = None;
            }
            None => self.refresh(client).await,
        }
    }

    /// Moves on after a retryable failure; returns whether the next attempt may
    /// start without a pause (a fresh leader hint, or another node after a
    /// connection failure).
    async fn advance(&mut self, client: &Client, e: &Error) -> bool {
        let previous_hint = self.hint.take();
        if let Error::NotLeader {
            leader_addr: Some(leader),
            ..
        } = e
        {
            if let Route::Tenant(tenant) = self.route {
                client.inner.placements.set_leader(tenant, leader);
            }
            let fresh = previous_hint.as_deref() != Some(leader.as_str());
            self.hint = Some(leader.clone());
            return fresh;
        }
        if previous_hint.is_none() {
            self.index += 1;
        }
        self.tried += 1;
        if self.route.tenant().is_some() && self.tried >= self.addrs.len() {
            self.refresh(client).await;
        }
        matches!(e, Error::Transport { .. })
    }
}

/// The error reported when the deadline ends the retries. A last `not-leader`
/// answer is the symptom, not the cause: the leader it names could not be reached
/// or kept changing, which is reported as unavailability.
fn give_up(e: Error, attempts: &Attempts) -> Error {
    match e {
        Error::NotLeader {
            leader_addr,
            message,
            ..
        } => Error::Unavailable {
            message: format!(
                "no reachable group leader after {} attempts in {:.1} s (last answer: {message}; leader hint: {})",
                attempts.count,
                attempts.elapsed().as_secs_f64(),
                leader_addr.as_deref().unwrap_or("none")
            ),
            code: Some(crate::error::NOT_LEADER_CODE.to_owned()),
        },
        other => other,
    }
}

/// A boxed resolve: `routed` → `Cursor` → `resolve_tenant` → `routed` would
/// otherwise be an infinitely sized future type.
type Resolving<'a> = Pin<Box<dyn Future<Output = Result<Placement, Error>> + Send + 'a>>;

/// Whether `e` (or the cause of an unknown outcome) is a node that did not answer.
fn is_transport(e: &Error) -> bool {
    match e {
        Error::OutcomeUnknown { cause, .. } => matches!(cause.as_ref(), Error::Transport { .. }),
        other => matches!(other, Error::Transport { .. }),
    }
}

impl Client {
    fn resolve_boxed<'a>(&'a self, tenant: &'a str) -> Resolving<'a> {
        Box::pin(self.resolve_tenant(tenant))
    }

    /// After `failed`, a member of the tenant's group (or secondary group), did not
    /// answer: asks every other member at once, within the connect timeout, and
    /// notes which do not answer either (tried last from then on; once every
    /// member is silent the placement is dropped, so the next attempt resolves
    /// the tenant again). Without it, a client whose tenant lost its whole region
    /// paid a full request or stream timeout on each member in turn before it
    /// asked where the tenant had gone (found by the region-failover scenario:
    /// workload clients wrote again 16 s after the region was lost, 10 s after the
    /// failover). The probe is `ResolveTenant`, which every live node answers.
    pub(crate) async fn probe_members(&self, tenant: &str, secondary: bool, failed: &str) {
        let Some(p) = self.inner.placements.get(tenant) else {
            return;
        };
        let limit = self.config().connect_timeout;
        let others: Vec<String> = route_addrs(&p, secondary)
            .into_iter()
            .filter(|a| a != failed)
            .collect();
        let probes = others
            .iter()
            .map(|addr| async move { (addr, self.probe(tenant, addr, limit).await) });
        for (addr, answered) in futures::future::join_all(probes).await {
            if !answered {
                tracing::debug!(tenant, %addr, "probe: member does not answer either");
                self.inner.placements.forget_unreachable(tenant, addr);
            }
        }
    }

    /// Whether `addr` answers a `ResolveTenant` for `tenant` within `limit` (any
    /// answer, a refusal too, shows the node is there); notes the result.
    async fn probe(&self, tenant: &str, addr: &str, limit: Duration) -> bool {
        let req = stratus_proto::v1::ResolveTenantRequest {
            tenant: tenant.to_owned(),
        };
        let call = async {
            let mut admin = self.admin_client(addr)?;
            admin
                .resolve_tenant(req)
                .await
                .map_err(|s| Error::from_status(&s, addr))
        };
        let answered = !matches!(
            crate::retry::with_timeout(limit, addr, call).await,
            Err(Error::Transport { .. })
        );
        self.note_reachable(addr, answered);
        if !answered {
            self.inner.channels.reset(addr);
        }
        answered
    }

    /// Before an attempt at `addr`, a node of the tenant's group that recently did
    /// not answer: whether it answers now (a probe within the connect timeout). An
    /// attempt at a dead node costs a request or stream timeout and, for a write
    /// sent at most once, leaves its outcome unknown; a probe costs the connect
    /// timeout and sends nothing.
    async fn still_silent(&self, route: Route<'_>, addr: &str) -> Option<Error> {
        let tenant = route.tenant()?;
        if !self.inner.unreachable.is_recent(addr)
            || self
                .probe(tenant, addr, self.config().connect_timeout)
                .await
        {
            return None;
        }
        Some(Error::Transport {
            addr: addr.to_owned(),
            message: "did not answer recently, nor a probe now; nothing was sent".into(),
            sent: false,
        })
    }

    /// Runs `attempt(addr, time_left)` until it succeeds, fails fatally, or the
    /// deadline passes (then the last failure is returned).
    pub(crate) async fn routed<T, F, Fut>(
        &self,
        route: Route<'_>,
        op: &'static str,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(String, Duration) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempts = Attempts::new(self.config());
        let mut cursor = Cursor::new(self, route).await?;
        let mut refreshed = false;
        loop {
            let addr = cursor.current();
            let outcome = match self.still_silent(route, &addr).await {
                Some(e) => Err(Failure::Retry(e)),
                None => attempt(addr.clone(), attempts.remaining()).await,
            };
            let e = match outcome {
                Ok(v) => {
                    cursor.succeeded(self, &addr);
                    return Ok(v);
                }
                Err(Failure::Fatal(e)) if !refreshed && cursor.is_stale_placement(&e) => {
                    refreshed = true;
                    cursor.refresh(self).await;
                    e
                }
                Err(Failure::Fatal(e)) => {
                    cursor.unreachable(self, &addr, &e);
                    if let (Some(tenant), true) = (route.tenant(), is_transport(&e)) {
                        // Before the caller hears (at most a connect timeout later):
                        // its next operation then avoids the members that are
                        // silent too. (Probing in the background let the next
                        // operation start first and wait on another dead member.)
                        self.probe_members(tenant, matches!(route, Route::Secondary(_)), &addr)
                            .await;
                    }
                    return Err(e);
                }
                Err(Failure::Retry(e)) => {
                    cursor.unreachable(self, &addr, &e);
                    if let (Some(tenant), true) = (route.tenant(), is_transport(&e)) {
                        self.probe_members(tenant, matches!(route, Route::Secondary(_)), &addr)
                            .await;
                        cursor.reload(self).await;
                        let Some(delay) = attempts.next(true) else {
                            return Err(give_up(e, &attempts));
                        };
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    let immediate = cursor.advance(self, &e).await;
                    let Some(delay) = attempts.next(immediate) else {
                        tracing::debug!(op, attempts = attempts.count, error = %e, "giving up");
                        return Err(give_up(e, &attempts));
                    };
                    tracing::debug!(op, %addr, attempt = attempts.count, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if attempts.next(true).is_none() {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Member;

    #[test]
    fn leader_is_tried_first_then_other_members() {
        let p = Placement {
            tenant: "acme".into(),
            group_id: 1,
            members: vec![
                Member {
                    node_id: 1,
                    addr: "a:1".into(),
                },
                Member {
                    node_id: 2,
                    addr: "b:2".into(),
                },
                Member {
                    node_id: 3,
                    addr: "c:3".into(),
                },
            ],
            leader_id: Some(2),
            leader_addr: Some("b:2".into()),
            secondary_group_id: Some(7),
            secondary_members: vec![Member {
                node_id: 9,
                addr: "z:9".into(),
            }],
            read_access: true,
        };
        assert_eq!(placement_addrs(&p), ["b:2", "a:1", "c:3"]);
        assert_eq!(route_addrs(&p, false), ["b:2", "a:1", "c:3"]);
        assert_eq!(route_addrs(&p, true), ["z:9"], "reads from the secondary");
        let cache = PlacementCache::default();
        cache.insert(p);
        cache.set_leader("acme", "c:3");
        let p = cache.get("acme").expect("cached");
        assert_eq!(p.leader_id, Some(3));
        assert_eq!(placement_addrs(&p)[0], "c:3");

        // The leader stops answering: the next operation starts with a member
        // that may know the new leader, and the silent node is tried last.
        cache.forget_unreachable("acme", "c:3");
        let p = cache.get("acme").expect("cached");
        assert_eq!((p.leader_id, p.leader_addr.as_deref()), (None, None));
        assert_eq!(placement_addrs(&p), ["a:1", "b:2", "c:3"]);
        // Another node failing does not disturb a known leader.
        cache.set_leader("acme", "b:2");
        cache.forget_unreachable("acme", "a:1");
        assert_eq!(
            placement_addrs(&cache.get("acme").expect("cached")),
            ["b:2", "c:3", "a:1"]
        );
        // Every member has gone silent (its region is down, the tenant may have
        // failed over): the placement goes, so the next operation resolves again.
        cache.forget_unreachable("acme", "b:2");
        assert!(
            cache.get("acme").is_none(),
            "all three members were unreachable"
        );
        // A fresh placement starts with a clean slate.
        cache.insert(p_again());
        cache.forget_unreachable("acme", "a:1");
        assert!(cache.get("acme").is_some());
    }

    fn p_again() -> Placement {
        Placement {
            tenant: "acme".into(),
            group_id: 1,
            members: ["a:1", "b:2", "c:3"]
                .iter()
                .zip(1..)
                .map(|(a, i)| Member {
                    node_id: i,
                    addr: (*a).into(),
                })
                .collect(),
            leader_id: None,
            leader_addr: None,
            secondary_group_id: None,
            secondary_members: vec![],
            read_access: false,
        }
    }
}
