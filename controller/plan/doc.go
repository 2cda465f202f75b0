// Package plan is Phoenix's whole rollout policy, as pure functions: given
// a group's desired state, what is recorded on its servers and volumes, and
// the time, it decides what to do next and why. It does no I/O and reads no
// clock, so the policy is tested with tables and by stepping it through
// random worlds rather than with a cloud.
//
// Plan runs in named phases, in this order:
//
//	classify   what each server is: current, old (drifted, too old, sick),
//	           failed, draining, deleting
//	failures   fold this round's failed boots into the recorded budget
//	halted     a halted rollout keeps what serves and starts nothing
//	budget     how many serving servers may go without falling below
//	           count − max_unavailable
//	canary     a new image or spec goes to a few servers first, which bake
//	removals   old servers drained, deleted or rebuilt in place, within the
//	           budget
//	surplus    current servers beyond count
//	handovers  data volumes moving from old servers to new ones
//	traffic    ready servers put into the pool or behind the floating IP
//	creates    new servers, pipelined within count + max_surge, kept out
//	           of zones where creates or boots failed lately
//	stall      the failure budget spent (failures after the gate count
//	           while the rollout is watched), no progress for the
//	           deadline, or a rollback that cannot be done: the round is
//	           planned again as halted — or, with on_failure rollback,
//	           rejects the image and names the previous one to go back to
//
// What a decision needs that must outlive a restart — the failure count of
// the image and revision, when the rollout last made progress, when a
// canary became ready or was promoted, what each server replaced and which
// image a rollback rejected, where a drain or a handover stands —
// comes in from the records on the servers and volumes, and what a later
// round needs goes out in the Decision (Progress, Halt, Reject, Previous)
// for the reconciler to record. The invariants it keeps are those of ARCHITECTURE.md: never
// more than count + max_surge servers, never fewer than count −
// max_unavailable serving because of a step it decided, an old server goes
// only once its replacement serves (or it is failed, surplus, or known to
// serve nothing), and a revision that keeps failing stops.
package plan
