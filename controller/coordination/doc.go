// Package coordination lets several replicas of the Phoenix daemon share
// the groups of one configuration through etcd, so that a replica can die
// without its groups stopping, and no group is ever reconciled by two
// replicas at once.
//
// Why etcd, and why this shape: a group's rollout is a sequence of cloud
// steps (create, add to the pool, drain, snapshot, delete) whose safety
// (the six invariants) rests on one reconciler deciding from one view. Two
// replicas acting on the same group would each keep max_surge and
// max_unavailable on their own and together break them. So each group has
// one owner, and the owner must be able to prove it before every step.
//
// The keys, under the configured prefix:
//
//	<prefix>replicas/<replica id>   empty, with the replica's lease
//	<prefix>groups/<group>          the owner's replica id, with its lease
//	<prefix>parked/<group>/<key>    a rebuild an event asked of the group
//	                                while another replica owned it, for
//	                                its next owner (a lease of ParkTTL)
//
// Ownership. A replica holds one lease of lease_ttl, renewed every third of
// it. It claims a group by creating the group's key with its lease in a
// transaction that requires the key not to exist, so at most one claim
// wins. It counts the live replicas by their keys and holds at most
// ceil(groups/replicas), shedding the extras (between two reconciles:
// the worker retires first, then the key is deleted) when a replica
// joins. When a replica dies its lease expires, etcd deletes its keys, and
// the others claim its groups within lease_ttl and one poll. A replica
// that stops (SIGTERM) revokes its lease, and the others take over at once.
//
// Fencing. Before every step that changes the cloud, the owner checks
// (a) that its lease is alive by its own clock: the last renewal it sent
// (the time the request left, not the time the answer came) plus the TTL,
// minus a margin, is still ahead — etcd cannot have expired the lease
// before that; and (b) that a linearizable transaction confirms the
// group's key still holds this replica's id and lease. Either failing, the
// step is not taken and the error wraps ErrNotOwner. Without quorum the
// transaction cannot succeed, so a replica cut off from etcd, or an etcd
// that lost its quorum, changes nothing — and says so in its log and
// status. A step that passed the check may still run on for as long as the
// cloud takes to answer it; the margin keeps its start, not its end,
// inside the lease.
//
// Leases survive a loss of quorum (etcd's new leader renews every lease it
// takes over), so when quorum returns the same replicas own the same groups
// and their rollouts continue.
package coordination
