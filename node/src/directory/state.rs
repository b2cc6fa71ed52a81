//! Applies [`DirectoryCommand`]s. The in-memory [`DirectoryView`] is the source for
//! reads; every change is also written to the engine so a restart reloads it.

use super::geo::{GeoRefusal, Secondary};
use super::vault::KeyVault;
use super::{
    DirectoryCommand, DirectoryData, DirectoryRejection, DirectoryResponse, DirectoryView,
    TenantRecord, TenantStatus,
};
use crate::objects::reader::ObjectReader;
use crate::raft::state_machine::Application;
use crate::raft::{encode, keys, Command, LogId, Response};
use crate::storage::{frame, EngineRef, StorageError, WriteBatch};
use std::ops::Bound;
use std::sync::Arc;
use stratus_core::placement::{place_secondary, place_tenant, GroupSpec, DIRECTORY_GROUP};
use stratus_core::topology::Topology;

/// The directory state machine.
pub struct DirectoryState {
    engine: EngineRef,
    topology: Arc<Topology>,
    groups: Arc<Vec<GroupSpec>>,
    view: DirectoryView,
}

fn vault_key(tenant: &str) -> Vec<u8> {
    let mut k = keys::app(DIRECTORY_GROUP);
    k.push(b'v');
    k.extend_from_slice(tenant.as_bytes());
    k
}

/// Access records: `a` the root (operator hash, signing keys), `g` + tenant its role
/// assignments, `k` + id an issued token.
fn access_key(space: u8, suffix: &[u8]) -> Vec<u8> {
    let mut k = keys::app(DIRECTORY_GROUP);
    k.push(space);
    k.extend_from_slice(suffix);
    k
}

fn store_access(
    data: &DirectoryData,
    changes: super::access::AccessChanges,
    batch: &mut WriteBatch,
) {
    let a = &data.access;
    if changes.root {
        if let Some(root) = &a.root {
            batch.put(access_key(b'a', b""), frame::encode(&encode(root)));
        }
    }
    if let Some(tenant) = changes.grants {
        let key = access_key(b'g', tenant.as_bytes());
        match a.grants.get(&tenant).filter(|g| !g.is_empty()) {
            Some(list) => batch.put(key, frame::encode(&encode(&(tenant.clone(), list.clone())))),
            None => batch.remove(key),
        }
    }
    for id in changes.tokens_written {
        if let Some(t) = a.tokens.get(&id) {
            batch.put(
                access_key(b'k', &id.to_be_bytes()),
                frame::encode(&encode(t)),
            );
        }
    }
    for id in changes.tokens_removed {
        batch.remove(access_key(b'k', &id.to_be_bytes()));
    }
}

fn tenant_key(name: &str) -> Vec<u8> {
    let mut k = keys::app(DIRECTORY_GROUP);
    k.push(b't');
    k.extend_from_slice(name.as_bytes());
    k
}

impl DirectoryState {
    pub fn new(
        engine: EngineRef,
        topology: Arc<Topology>,
        groups: Arc<Vec<GroupSpec>>,
        view: DirectoryView,
    ) -> Self {
        Self {
            engine,
            topology,
            groups,
            view,
        }
    }

    fn scan_records<T: for<'de> serde::Deserialize<'de>>(
        &self,
        space: u8,
    ) -> Result<Vec<T>, StorageError> {
        let mut start = keys::app(DIRECTORY_GROUP);
        start.push(space);
        let end = keys::prefix_end(&start).unwrap_or_default();
        self.engine
            .scan(Bound::Included(&start), Bound::Excluded(&end), usize::MAX)?
            .iter()
            .map(|(k, v)| ObjectReader::decode_record(k, v))
            .collect()
    }

    fn apply_command(
        &self,
        data: &mut DirectoryData,
        command: DirectoryCommand,
        batch: &mut WriteBatch,
    ) -> DirectoryResponse {
        use DirectoryRejection as R;
        match command {
            DirectoryCommand::CreateTenant {
                name,
                region,
                redundancy,
                now_ms,
                kek,
                purge_protection,
            } => {
                if data.tenants.contains_key(&name) {
                    return DirectoryResponse::Rejected(R::TenantExists(name));
                }
                let load = data.load();
                let group =
                    match place_tenant(&self.topology, &self.groups, &region, redundancy, &load) {
                        Ok(g) => g,
                        Err(e) => return DirectoryResponse::Rejected(R::Placement(e.to_string())),
                    };
                let secondary = if redundancy.is_geo() {
                    match place_secondary(&self.topology, &self.groups, &region, &load) {
                        // Seeded like any new secondary (quick for an empty tenant), so
                        // writes that land before the primary ships are copied too.
                        Ok((region, group)) => Some(Secondary {
                            region,
                            group,
                            seeded: false,
                        }),
                        Err(e) => return DirectoryResponse::Rejected(R::Placement(e.to_string())),
                    }
                } else {
                    None
                };
                let record = TenantRecord {
                    name: name.clone(),
                    region,
                    redundancy,
                    group,
                    status: TenantStatus::Active,
                    created_ms: now_ms,
                    epoch: 0,
                    secondary,
                    failovers: Vec::new(),
                    auto_failover_after_ms: None,
                    lease: None,
                };
                let vault = KeyVault::new(&name, kek, now_ms, purge_protection);
                batch.put(tenant_key(&name), frame::encode(&encode(&record)));
                batch.put(vault_key(&name), frame::encode(&encode(&vault)));
                self.view.forget_keks(&name);
                data.vaults.insert(name.clone(), vault);
                data.tenants.insert(name, record.clone());
                DirectoryResponse::Tenant(record)
            }
            DirectoryCommand::DeleteTenant { name } => {
                if data.tenants.remove(&name).is_none() {
                    return DirectoryResponse::Rejected(R::TenantNotFound(name));
                }
                batch.remove(tenant_key(&name));
                // The tenant's keys go with it: whatever is left of its data is shredded.
                batch.remove(vault_key(&name));
                data.vaults.remove(&name);
                // So are its role assignments and tokens.
                let mut changes = super::access::AccessChanges::default();
                data.access.forget_tenant(&name, &mut changes);
                store_access(data, changes, batch);
                self.view.forget_keks(&name);
                self.view.request_shred();
                DirectoryResponse::Deleted
            }
            DirectoryCommand::Keys { tenant, op, now_ms } => {
                let Some(vault) = data.vaults.get_mut(&tenant) else {
                    return DirectoryResponse::Rejected(R::TenantNotFound(tenant));
                };
                let mut next = vault.clone();
                let destroys = op.destroys_material();
                if let Err(refusal) = next.apply(op, now_ms) {
                    return DirectoryResponse::Rejected(R::Keys(refusal));
                }
                if destroys {
                    self.view.request_shred();
                }
                batch.put(vault_key(&tenant), frame::encode(&encode(&next)));
                *vault = next.clone();
                self.view.forget_keks(&tenant);
                DirectoryResponse::Vault(next)
            }
            DirectoryCommand::UpdateTenant {
                name,
                redundancy,
                auto_failover_after_ms,
            } => {
                let load = data.load();
                let (topology, groups) = (&self.topology, &self.groups);
                self.change_tenant(data, batch, &name, |t| {
                    if let Some(class) = redundancy {
                        let region = t.region.clone();
                        t.update_class(class, || {
                            place_secondary(topology, groups, &region, &load).map_err(|e| e.to_string())
                        })?;
                    }
                    if let Some(policy) = auto_failover_after_ms {
                        if policy.is_some() && t.secondary.is_none() {
                            return Err(GeoRefusal::State(format!(
                                "tenant {:?} is {}: automatic failover needs a secondary region (GRS, RA-GRS, GZRS or RA-GZRS)",
                                t.name, t.redundancy
                            )));
                        }
                        t.auto_failover_after_ms = policy;
                    }
                    Ok(())
                })
            }
            DirectoryCommand::BeginFailover {
                name,
                planned,
                now_ms,
            } => self.change_tenant(data, batch, &name, |t| t.begin_failover(planned, now_ms)),
            DirectoryCommand::AbortFailover { name } => {
                self.change_tenant(data, batch, &name, |t| t.abort_failover())
            }
            DirectoryCommand::CompleteFailover {
                name,
                planned,
                now_ms,
                outcome,
            } => {
                let mut record = None;
                let response = self.change_tenant(data, batch, &name, |t| {
                    record = Some(t.complete_failover(planned, now_ms, outcome)?);
                    Ok(())
                });
                match (response, record) {
                    (DirectoryResponse::Tenant(tenant), Some(record)) => {
                        self.view.notify_geo_changed();
                        DirectoryResponse::FailedOver {
                            tenant: Box::new(tenant),
                            record: Box::new(record),
                        }
                    }
                    (other, _) => other,
                }
            }
            DirectoryCommand::CompleteReprotect {
                name,
                recovery_container,
                recovered_objects,
            } => {
                self.view.notify_geo_changed();
                self.change_tenant(data, batch, &name, |t| {
                    t.complete_reprotect(recovery_container, recovered_objects)
                })
            }
            DirectoryCommand::RenewLeases {
                group,
                asks,
                now_ms,
            } => {
                let mut answers = Vec::with_capacity(asks.len());
                for ask in asks {
                    let granted = match data.tenants.get_mut(&ask.tenant) {
                        Some(t) => {
                            let granted = t.grant_lease(group, &ask, now_ms);
                            if granted.is_some() {
                                batch.put(tenant_key(&t.name), frame::encode(&encode(&*t)));
                                if let Some(grant) = &t.lease {
                                    self.view.note_lease(&t.name, grant.clone());
                                }
                            }
                            granted
                        }
                        None => None,
                    };
                    answers.push((ask.tenant, granted));
                }
                DirectoryResponse::Leases(answers)
            }
            DirectoryCommand::Access { op, now_ms } => {
                let mut changes = super::access::AccessChanges::default();
                match data.access.apply(op, now_ms, &mut changes) {
                    Ok(outcome) => {
                        store_access(data, changes, batch);
                        DirectoryResponse::Access(outcome)
                    }
                    Err(refusal) => DirectoryResponse::Rejected(R::Access(refusal)),
                }
            }
            DirectoryCommand::GeoSeeded { name, group, epoch } => {
                self.change_tenant(data, batch, &name, |t| {
                    t.mark_seeded(group, epoch);
                    Ok(())
                })
            }
        }
    }

    /// Applies `change` to tenant `name` and stores it, or answers why not.
    fn change_tenant(
        &self,
        data: &mut DirectoryData,
        batch: &mut WriteBatch,
        name: &str,
        change: impl FnOnce(&mut TenantRecord) -> Result<(), GeoRefusal>,
    ) -> DirectoryResponse {
        let Some(current) = data.tenants.get(name) else {
            return DirectoryResponse::Rejected(DirectoryRejection::TenantNotFound(name.into()));
        };
        let mut next = current.clone();
        if let Err(refusal) = change(&mut next) {
            return DirectoryResponse::Rejected(DirectoryRejection::Geo(refusal));
        }
        batch.put(tenant_key(name), frame::encode(&encode(&next)));
        data.tenants.insert(name.to_string(), next.clone());
        DirectoryResponse::Tenant(next)
    }
}

impl Application for DirectoryState {
    fn apply(
        &mut self,
        command: Command,
        _log_id: LogId,
        _view: &EngineRef,
        batch: &mut WriteBatch,
    ) -> Result<Response, StorageError> {
        let Command::Directory(command) = command else {
            return Err(StorageError::Corrupt {
                key: "directory".into(),
                why: "object command in the directory's log".into(),
            });
        };
        let view = self.view.clone();
        Ok(Response::Directory(
            view.write(|data| self.apply_command(data, command, batch)),
        ))
    }

    fn reload(&mut self) -> Result<(), StorageError> {
        let tenants: Vec<TenantRecord> = self.scan_records(b't')?;
        let vaults: Vec<KeyVault> = self.scan_records(b'v')?;
        let roots: Vec<super::access::AccessRoot> = self.scan_records(b'a')?;
        let grants: Vec<(String, Vec<stratus_core::auth::RoleGrant>)> = self.scan_records(b'g')?;
        let tokens: Vec<super::access::IssuedToken> = self.scan_records(b'k')?;
        self.view.write(|data| {
            data.tenants = tenants.into_iter().map(|t| (t.name.clone(), t)).collect();
            data.vaults = vaults.into_iter().map(|v| (v.tenant.clone(), v)).collect();
            data.access = super::access::AccessData {
                root: roots.into_iter().next(),
                grants: grants.into_iter().collect(),
                tokens: tokens.into_iter().map(|t| (t.id, t)).collect(),
            };
        });
        for tenant in self
            .view
            .read(|d| d.tenants.keys().cloned().collect::<Vec<_>>())
        {
            self.view.forget_keks(&tenant);
        }
        // A purge applied before a restart may have been shredded only partly.
        if self.view.read(|d| {
            d.vaults
                .values()
                .any(|v| matches!(v.state, super::vault::VaultState::Purged { .. }))
        }) {
            self.view.request_shred();
        }
        Ok(())
    }
}
