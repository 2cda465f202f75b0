//go:build chaosbugs

package controller

import "os"

// activeBug is the injected bug PHOENIX_CHAOS_BUG names, read once.
var activeBug = os.Getenv("PHOENIX_CHAOS_BUG")

func bugOn(b string) bool { return activeBug == b }

// InjectableBugs lists the bugs this binary can inject.
func InjectableBugs() []string {
	return []string{BugSurgeIgnored, BugEarlyDelete, BugUntagged, BugRollbackSkipsGate, BugSteeringIgnored}
}
