// Package healthcheck decides whether a server is healthy.
//
// Health gates replacement: a new server counts as a replacement only once
// it is healthy, and the old server it replaces is removed only after that.
// A wrong verdict either way costs capacity, so the package keeps to these
// rules:
//
//   - A probe (HTTPProbe, TCPProbe or any Prober) is one attempt bounded by
//     its context, and never retries inside itself. Flakiness is absorbed
//     by thresholds instead (HealthyThreshold passes in a row to become
//     healthy, UnhealthyThreshold failures in a row to become unhealthy),
//     which keeps the delay to a verdict explicit and predictable.
//   - Failures during the grace period after a server became ACTIVE are
//     noted but not counted: a booting application refusing connections is
//     not unhealthy. Passes during grace do count, so a fast server is not
//     held back.
//   - The verdict is a pure function of the probe history
//     (Observation.Record), tested on its own.
//
// The Checker keeps, for each watched server, an Observation: its State
// (Unknown until a threshold is reached), since when, and the last probe's
// time and error. The controller hands it the complete set of servers to
// watch with Watch, reads verdicts with Observe, and waits on Changes to
// act as soon as a verdict changes. The Checker keeps nothing else: a server
// dropped from Watch is forgotten, and a server whose address, probe, policy
// or start time changed starts over from Unknown.
package healthcheck
