// Package blocker answers one question before Phoenix starts a voluntary
// server replacement: does something outside Phoenix say "not now"?
//
// Why: a rollout takes servers out of service on purpose. While the
// fleet is already in trouble — an alert firing, a dependency down, a
// maintenance window announced as a metric — doing so adds risk for
// nothing, and the people watching the alerts are not the ones watching
// Phoenix. So, like kured's --prometheus-url and --alert-filter-regexp,
// an operator names a Prometheus query whose series are "blockers":
// while it returns any series, no new replacement starts. Replacements
// under way finish; the blocker is asked before each one begins.
//
// Fail safe: a blocker that cannot be asked (Prometheus down, a timeout,
// a query Prometheus refuses, an answer that cannot be read) blocks, and
// its reason says that it could not be answered and why. Starting
// replacements because the monitoring is down would remove the very
// guard the blocker exists for, at the time it matters most; waiting
// costs only time, and the reason tells the operator what to fix.
//
// Invariants the package keeps:
//   - A reason is short (at most MaxReason bytes) and names the query and
//     at most three of its series, so it fits a log line and a status.
//   - A reason or error never carries the credentials of the URL: they
//     are taken out of the URL before the client sees it and sent as
//     basic auth, and any error text is redacted once more.
//   - Prometheus is asked at most once per minimum interval (default 5 s)
//     however often the reconciler asks, and one query at a time.
package blocker
