//go:build !chaosbugs

package controller

// bugOn is false: a production build has no injected bug.
func bugOn(string) bool { return false }

// InjectableBugs lists the bugs this binary can inject: none.
func InjectableBugs() []string { return nil }
