//! The leader's side of a chunked put: every stored chunk is written locally and
//! streamed to each other member by a sender task with a bounded queue, so a slow
//! member applies backpressure and memory stays bounded (queue depth plus requests
//! in flight, chunks shared between members). A member whose RPC fails is dropped
//! from the upload; it repairs the version after the commit. The upload fails only
//! when too few members are left for a majority.

use super::{version_to_wire, CHUNK_RPC_TIMEOUT};
use crate::error::{NodeError, NodeResult};
use crate::node::StratusNode;
use crate::objects::chunks::ChunkStore;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::sync::Arc;
use stratus_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks queued for one member before the leader waits for it.
const QUEUE_DEPTH: usize = 4;
/// Chunk RPCs one member may have in flight.
const IN_FLIGHT_MAX: usize = 4;

/// A member's sender task: ends with the first failed RPC, if any.
type SenderTask = JoinHandle<Result<(), String>>;

struct Member {
    id: u64,
    queue: Option<mpsc::Sender<(u32, Bytes, u32)>>,
    task: Option<SenderTask>,
    failure: Option<String>,
}

/// One chunked version being written to the group's members.
pub struct Fanout {
    node: Arc<StratusNode>,
    group: u64,
    version: u128,
    /// This node's copy, when it is a voter of the group (a geo shipper writes to
    /// another region's group and keeps no copy of its own).
    local: Option<ChunkStore>,
    members: Vec<Member>,
    /// Other members that must hold the version for a majority.
    needed: usize,
    /// Set once the version is committed or cleaned up: nothing to undo on drop.
    settled: bool,
}

async fn sender(
    client: crate::peers::PeerClient,
    base: pb::WriteChunkRequest,
    mut queue: mpsc::Receiver<(u32, Bytes, u32)>,
) -> Result<(), String> {
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let done: Result<(), String> = done;
                done?;
            }
            next = queue.recv(), if open && in_flight.len() < IN_FLIGHT_MAX => match next {
                Some((index, data, crc32)) => {
                    let request = pb::WriteChunkRequest { index, data, crc32, ..base.clone() };
                    let mut client = client.clone();
                    in_flight.push(async move {
                        match tokio::time::timeout(CHUNK_RPC_TIMEOUT, client.write_chunk(request)).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(status)) => Err(format!("chunk {index}: {}", status.message())),
                            Err(_) => Err(format!("chunk {index}: no answer within {}s", CHUNK_RPC_TIMEOUT.as_secs())),
                        }
                    });
                }
                None => open = false,
            },
            else => return Ok(()),
        }
        if !open && in_flight.is_empty() {
            return Ok(());
        }
    }
}

impl Fanout {
    /// Starts writing `version` of `group` to every other voter of the group (to
    /// every voter, and a majority of them, when this node is not one).
    pub fn start(node: Arc<StratusNode>, group: u64, version: u128) -> NodeResult<Fanout> {
        let spec = node
            .spec(group)
            .ok_or_else(|| NodeError::Internal(format!("group {group} is not planned")))?
            .clone();
        let needed = spec.voters.len() / 2 + 1 - usize::from(spec.voters.contains(&node.id));
        let mut members = Vec::new();
        for id in spec.voters.iter().copied().filter(|id| *id != node.id) {
            let mut member = Member {
                id,
                queue: None,
                task: None,
                failure: None,
            };
            match node.peers.client(id) {
                Some(client) => {
                    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                    let base = pb::WriteChunkRequest {
                        group_id: group,
                        from: node.id,
                        version: version_to_wire(version),
                        ..Default::default()
                    };
                    member.queue = Some(tx);
                    member.task = Some(tokio::spawn(sender(client, base, rx)));
                }
                None => member.failure = Some("no address in the topology".into()),
            }
            members.push(member);
        }
        let local = spec
            .voters
            .contains(&node.id)
            .then(|| ChunkStore::new(node.blobs.clone(), group));
        Ok(Fanout {
            node,
            group,
            version,
            local,
            members,
            needed,
            settled: false,
        })
    }

    fn live(&self) -> usize {
        self.members.iter().filter(|m| m.failure.is_none()).count()
    }

    fn too_few(&self, stage: &str) -> NodeError {
        let why: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| m.failure.as_ref().map(|f| format!("node {}: {f}", m.id)))
            .collect();
        NodeError::Unavailable(format!(
            "group {} cannot {stage}: a majority needs {} more member(s) but only {} answer ({}); nothing was stored",
            self.group,
            self.needed,
            self.live(),
            why.join("; ")
        ))
    }

    /// Stores chunk `index` locally and queues it for every live member; returns
    /// the chunk's CRC-32.
    pub async fn write(&mut self, index: u32, data: Bytes) -> NodeResult<u32> {
        let crc = crc32fast::hash(&data);
        if let Some(local) = &self.local {
            local.write(self.version, index, &data)?;
        }
        for member in self.members.iter_mut().filter(|m| m.failure.is_none()) {
            let Some(queue) = &member.queue else { continue };
            if queue.send((index, data.clone(), crc)).await.is_err() {
                member.failure = Some(match member.task.take() {
                    Some(task) => match task.await {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => "the sender stopped".into(),
                        Err(e) => format!("the sender failed: {e}"),
                    },
                    None => "the sender stopped".into(),
                });
                tracing::warn!(
                    group = self.group,
                    member = member.id,
                    why = member.failure.as_deref().unwrap_or(""),
                    "member dropped from an upload; it will repair after the commit"
                );
            }
        }
        if self.live() < self.needed {
            return Err(self.too_few("take this upload"));
        }
        Ok(crc)
    }

    /// Waits until every live member has every chunk, makes the version durable
    /// here and on them, and checks a majority holds all `count` chunks.
    pub async fn finish(&mut self, count: u32) -> NodeResult<()> {
        for member in self.members.iter_mut() {
            member.queue = None;
            if let Some(task) = member.task.take() {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => member.failure = member.failure.take().or(Some(e)),
                    Err(e) => {
                        member.failure = member
                            .failure
                            .take()
                            .or(Some(format!("the sender failed: {e}")))
                    }
                }
            }
        }
        self.node.blobs.sync().await?;
        let syncs = self
            .members
            .iter()
            .filter(|m| m.failure.is_none())
            .map(|m| {
                let client = self.node.peers.client(m.id);
                let request = pb::SyncChunksRequest {
                    group_id: self.group,
                    from: self.node.id,
                    version: version_to_wire(self.version),
                    count,
                };
                let id = m.id;
                async move {
                    let Some(mut client) = client else {
                        return (id, Err("no address".to_string()));
                    };
                    let outcome =
                        match tokio::time::timeout(CHUNK_RPC_TIMEOUT, client.sync_chunks(request))
                            .await
                        {
                            Ok(Ok(reply)) if reply.get_ref().missing.is_empty() => Ok(()),
                            Ok(Ok(reply)) => {
                                Err(format!("missing chunks {:?}", reply.get_ref().missing))
                            }
                            Ok(Err(status)) => Err(status.message().to_string()),
                            Err(_) => Err(format!(
                                "no sync answer within {}s",
                                CHUNK_RPC_TIMEOUT.as_secs()
                            )),
                        };
                    (id, outcome)
                }
            });
        for (id, outcome) in futures::future::join_all(syncs).await {
            if let (Err(e), Some(m)) = (outcome, self.members.iter_mut().find(|m| m.id == id)) {
                m.failure = Some(e);
            }
        }
        if self.live() < self.needed {
            return Err(self.too_few("make this upload durable"));
        }
        Ok(())
    }

    /// The version is committed (or the state machine already dropped it): nothing
    /// to undo.
    pub fn settle(&mut self) {
        self.settled = true;
    }

    /// Removes the version's chunks here and, best effort, on every member.
    pub async fn abandon(&mut self) {
        self.settled = true;
        cleanup(
            self.node.clone(),
            self.group,
            self.version,
            self.members
                .iter_mut()
                .map(|m| (m.id, m.task.take()))
                .collect(),
        )
        .await;
    }
}

async fn cleanup(
    node: Arc<StratusNode>,
    group: u64,
    version: u128,
    members: Vec<(u64, Option<SenderTask>)>,
) {
    let mut drops = Vec::new();
    for (id, task) in members {
        if let Some(task) = task {
            task.abort();
        }
        if let Some(mut client) = node.peers.client(id) {
            let request = pb::DropChunksRequest {
                group_id: group,
                from: node.id,
                version: version_to_wire(version),
            };
            drops.push(async move {
                let _ = tokio::time::timeout(CHUNK_RPC_TIMEOUT, client.drop_chunks(request)).await;
            });
        }
    }
    futures::future::join_all(drops).await;
    if let Err(e) = ChunkStore::new(node.blobs.clone(), group).remove(version) {
        tracing::warn!(group, version = %format!("{version:032x}"), error = %e, "could not remove the chunks of an abandoned upload; the sweep will");
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        if !self.settled {
            // The handler went away mid-upload (client vanished, shutdown): clean up in
            // the background so no staged chunk lingers.
            let members = self
                .members
                .iter_mut()
                .map(|m| (m.id, m.task.take()))
                .collect();
            tokio::spawn(cleanup(
                self.node.clone(),
                self.group,
                self.version,
                members,
            ));
        }
    }
}
