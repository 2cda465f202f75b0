// Package healthcheck decides whether a server is healthy.
//
// Health gates replacement: a new server counts as a replacement only once
// it is healthy, and an old server is removed only after that. A wrong
// verdict either way costs capacity, so the package keeps three rules:
//
//   - A probe is one attempt and never retries inside itself. Flakiness is
//     absorbed by thresholds (HealthyThreshold passes in a row to become
//     healthy, UnhealthyThreshold failures in a row to become unhealthy),
//     which makes the verdict's delay explicit and predictable.
//   - Failures during the grace period after a server became ACTIVE do not
//     count: a booting application refusing connections is not unhealthy.
//     Passes during grace do count, so a fast server is not held back.
//   - The verdict is a pure function of the probe history (Observation.Record),
//     tested on its own; the Checker only schedules probes and keeps
//     verdicts.
package healthcheck
