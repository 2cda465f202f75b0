// Package daemon is the long-running Phoenix: one worker per group, each
// running the group's reconciler in a loop (never two rounds of a group at
// once, at most controller.parallel_groups at the same moment), the image
// watch that wakes the groups whose gold image changed, the dispatch of
// signed events, status and metrics over HTTP, notices, and the sharing of
// groups among replicas.
//
// It acts on the cloud only through the reconciler (the event actions
// included: marks for rebuild, quarantine) and holds nothing that decides
// what exists: a worker's reconciler reads the servers each round. What it
// keeps in memory — the image cache, the last decision of each group for
// status and metrics, the rebuilds parked for groups another replica owns —
// speeds it up or reports; a restart reads everything else back from the
// servers.
package daemon
