//! Running groups: one openraft instance per group this node belongs to.
//!
//! Owns starting a group over the shared engine and peer channels, bootstrapping its
//! membership from the deterministic plan, and the per-group questions the services
//! ask (am I the leader, who is, propose a command, confirm leadership for a read).

use crate::error::{NodeError, NodeResult};
use crate::peers::Peers;
use crate::proposals::{Outcome, ProposalQueue};
use crate::raft::log_store::LogStore;
use crate::raft::network::GroupNetwork;
use crate::raft::state_machine::{Application, GroupStateMachine};
use crate::raft::{
    raft_config, Command, GroupCounters, Raft, RaftTiming, Response, SnapshotTrigger,
};
use crate::read_barrier::{Confirmation, ReadBarrier};
use crate::storage::group_commit::GroupCommit;
use crate::storage::{BlobRef, EngineRef};
use openraft::error::RaftError;
use openraft::{BasicNode, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use stratus_core::placement::GroupSpec;

/// How long a proposal may wait for commit before the caller hears "unavailable".
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long confirming leadership for a linearizable read may take.
pub const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);

/// A group this node is a member of.
pub struct GroupHandle {
    pub spec: GroupSpec,
    pub raft: Raft,
    /// Log volume since this replica's last snapshot.
    pub counters: Arc<GroupCounters>,
    /// This replica's log (shared with openraft), for shredding.
    log: LogStore,
    reads: Arc<ReadBarrier>,
    proposals: Arc<ProposalQueue>,
    /// A leader whose quorum has not acknowledged it for this long stops serving.
    quorum_stale_ms: u64,
    me: u64,
    peers: Arc<Peers>,
}

/// The storage a group runs on: the node's engine and blob store.
#[derive(Clone)]
pub struct GroupStorage {
    pub engine: EngineRef,
    pub blobs: BlobRef,
    /// The node's one flusher of `engine`.
    pub commit: Arc<GroupCommit>,
}

/// One confirmation round: `ensure_linearizable` under a timeout. Its read index
/// is the leader's no-op entry or later, which is sound because a replica never
/// resumes leadership from its stored vote ([`LogStore::forget_own_leadership`]).
fn read_barrier(raft: Raft, group: u64) -> Arc<ReadBarrier> {
    ReadBarrier::new(Arc::new(move || {
        let raft = raft.clone();
        Box::pin(async move {
            match tokio::time::timeout(READ_INDEX_TIMEOUT, raft.ensure_linearizable()).await {
                Ok(Ok(_)) => Confirmation::Confirmed,
                Ok(Err(RaftError::APIError(_))) => Confirmation::NotLeader,
                Ok(Err(RaftError::Fatal(e))) => {
                    Confirmation::Unavailable(format!("group {group} stopped: {e}"))
                }
                Err(_) => Confirmation::Unavailable(format!(
                    "group {group} could not confirm its leader within {}s (quorum lost?)",
                    READ_INDEX_TIMEOUT.as_secs()
                )),
            }
        })
    }))
}

/// A snapshot of one replica's Raft state, for status.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub role: &'static str,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: Vec<u64>,
    pub voter: bool,
}

impl GroupHandle {
    /// Opens the group's storage, starts its Raft instance and, for a voter of a
    /// never-initialised group, proposes the planned membership.
    pub async fn start<A: Application>(
        spec: GroupSpec,
        me: u64,
        storage: GroupStorage,
        peers: Arc<Peers>,
        timing: RaftTiming,
        app: A,
    ) -> anyhow::Result<Self> {
        let config = Arc::new(raft_config(spec.id, timing)?);
        let counters = Arc::new(GroupCounters::default());
        let mut log = LogStore::open(
            storage.engine.clone(),
            storage.blobs.clone(),
            storage.commit.clone(),
            spec.id,
            counters.clone(),
        )?;
        log.forget_own_leadership(me).await?;
        let sm = GroupStateMachine::open(
            storage.engine,
            storage.blobs,
            spec.id,
            app,
            counters.clone(),
        )?;
        let network = GroupNetwork::new(peers.clone(), spec.id, me);
        let raft = Raft::new(me, config, network, log.clone(), sm).await?;
        if spec.voters.contains(&me) && !raft.is_initialized().await? {
            let members: BTreeMap<u64, BasicNode> = spec
                .voters
                .iter()
                .map(|id| (*id, BasicNode::new(peers.addr(*id).unwrap_or_default())))
                .collect();
            // Every voter proposes the same initial membership; openraft accepts that
            // and the identical first entry makes it safe.
            if let Err(e) = raft.initialize(members).await {
                tracing::debug!(group = spec.id, error = %e, "initialize skipped");
            }
        }
        let reads = read_barrier(raft.clone(), spec.id);
        let proposals = ProposalQueue::new(raft.clone(), PROPOSE_TIMEOUT);
        Ok(Self {
            spec,
            raft,
            counters,
            log,
            reads,
            proposals,
            quorum_stale_ms: timing.election_min.as_millis() as u64,
            me,
            peers,
        })
    }

    pub fn id(&self) -> u64 {
        self.spec.id
    }

    /// The leader this replica currently knows of.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this replica leads the group and a quorum acknowledged it within an
    /// election timeout. A leader cut off from its quorum stops taking requests
    /// (clients move on to the other members) instead of letting them hang until
    /// it learns it was replaced: found by the simulation (leader-isolation), where
    /// writes came back only when the partition healed.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.me) {
            return false;
        }
        if self.spec.voters.len() <= 1 {
            return true;
        }
        m.millis_since_quorum_ack
            .is_some_and(|ms| ms <= self.quorum_stale_ms)
    }

    /// A `NotLeader` error with the best hint this replica has.
    pub fn not_leader(&self) -> NodeError {
        let leader_id = self.leader().filter(|l| *l != self.me);
        NodeError::NotLeader {
            me: self.me,
            group: self.spec.id,
            leader_id,
            leader_addr: leader_id.and_then(|l| self.peers.addr(l)),
        }
    }

    /// Fails with `NotLeader` unless this replica leads the group.
    pub fn require_leader(&self) -> NodeResult<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    /// Proposes `command` (batched with concurrent proposals, see
    /// [`ProposalQueue`]) and waits until it is committed and applied.
    pub async fn propose(&self, command: Command) -> NodeResult<Response> {
        match self.proposals.propose(command).await {
            Outcome::Applied(response) => Ok(response),
            Outcome::NotLeader => Err(self.not_leader()),
            Outcome::Failed(why) => Err(NodeError::Unavailable(format!("group {}: {why}", self.spec.id))),
            Outcome::Unknown => Err(NodeError::Unavailable(format!(
                "group {} did not commit the write within {}s (quorum lost?); its outcome is unknown",
                self.spec.id,
                PROPOSE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Confirms this replica still leads a quorum and has applied everything
    /// committed before the call, so local reads are linearizable. Concurrent
    /// callers share confirmation rounds ([`ReadBarrier`]).
    pub async fn linearizable_barrier(&self) -> NodeResult<()> {
        match self.reads.confirm().await {
            Confirmation::Confirmed => Ok(()),
            Confirmation::NotLeader => Err(self.not_leader()),
            Confirmation::Unavailable(why) => Err(NodeError::Unavailable(why)),
        }
    }

    /// This replica's Raft state.
    pub fn state(&self) -> ReplicaState {
        let m = self.raft.metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
        ReplicaState {
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            voter: voters.contains(&self.me),
            voters: voters.into_iter().collect(),
        }
    }

    /// Asks openraft for a snapshot (and so a log purge) once the log has grown
    /// enough since the last one.
    pub async fn maybe_snapshot(&self, trigger: SnapshotTrigger) {
        if self.counters.snapshot_due(trigger) {
            if let Err(e) = self.raft.trigger().snapshot().await {
                tracing::warn!(group = self.spec.id, error = %e, "snapshot trigger failed");
            }
        }
    }

    /// One step towards removing every log entry at or below `index` from this
    /// replica's disk: snapshot past it, seal the segment holding it, purge the log
    /// up to the snapshot. Returns true once no stored segment holds such an entry.
    /// Called until it does (each call does at most one step's work).
    pub async fn shred_log_through(&self, index: u64) -> bool {
        if self
            .log
            .oldest_stored_index()
            .is_none_or(|first| first > index)
        {
            return true;
        }
        // Later entries go to a new segment, so the ones holding `index` and below
        // can be removed whole once purged.
        self.log.seal_segment_holding(index);
        let snapshot = self.raft.metrics().borrow().snapshot.map(|s| s.index);
        if let Some(s) = snapshot.filter(|s| *s >= index) {
            if let Err(e) = self.raft.trigger().purge_log(s).await {
                tracing::warn!(group = self.spec.id, error = %e, "log purge for shredding failed");
            }
        }
        // The next step purges up to this snapshot: past whatever the sealed
        // segment received before it was sealed.
        if let Err(e) = self.raft.trigger().snapshot().await {
            tracing::warn!(group = self.spec.id, error = %e, "snapshot for shredding failed");
        }
        false
    }

    /// Adds planned learners missing from the membership (directory only). Called
    /// periodically on the leader; non-blocking, so a down learner never stalls it.
    pub async fn ensure_learners(&self) {
        if !self.is_leader() || self.spec.learners.is_empty() {
            return;
        }
        let present: BTreeSet<u64> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        for id in self.spec.learners.iter().filter(|id| !present.contains(id)) {
            let node = BasicNode::new(self.peers.addr(*id).unwrap_or_default());
            match self.raft.add_learner(*id, node, false).await {
                Ok(_) => tracing::info!(group = self.spec.id, learner = id, "added learner"),
                Err(e) => {
                    tracing::debug!(group = self.spec.id, learner = id, error = %e, "add learner deferred")
                }
            }
        }
    }
}
