package controller

// Known policy bugs the chaos harness (`phoenix chaos --bug`) must catch.
// They exist only in a binary built with `-tags chaosbugs` and switched on
// by PHOENIX_CHAOS_BUG; in every other build bugOn is a constant false
// and the compiler drops the bad branches. A harness that never fails
// proves nothing: these show that each invariant's check can fire.
const (
	// BugSurgeIgnored creates every missing server at once, whatever
	// max_surge allows (invariant 2, bound).
	BugSurgeIgnored = "surge-ignored"
	// BugEarlyDelete deletes old servers before their replacements serve
	// (invariants 1 and 4, availability and replace before remove).
	BugEarlyDelete = "early-delete"
	// BugUntagged creates servers without the group tag (invariant 3, no
	// orphans).
	BugUntagged = "untagged"
	// BugRollbackSkipsGate takes the new servers of a rollback for
	// healthy from the moment they are ACTIVE, before their health check
	// passed: they are recorded ready and put into the traffic unchecked
	// (the health gate, which a rollback keeps like any rollout).
	BugRollbackSkipsGate = "rollback-skips-gate"
	// BugSteeringIgnored starts voluntary replacements whatever holds,
	// blockers and maintenance windows say (invariant 7, steering).
	BugSteeringIgnored = "steering-ignored"
	// BugPromoteEarly tags a stage's image as soon as it is the group's
	// image, before the group converged and served it healthy for
	// promote.after (the stage gate).
	BugPromoteEarly = "promote-early"
)
