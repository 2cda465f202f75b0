package notifications

import "time"

// Backoff bounds the wait between two connection attempts.
type Backoff struct {
	Min, Max time.Duration
}

// Default back-off: retry soon after a blip, and at most every half
// minute while the broker stays away.
const (
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 30 * time.Second
)

// delay is the wait before attempt n+1 after n failures in a row (n ≥ 1):
// Min doubled n−1 times, capped at Max, then drawn uniformly between half
// and all of that (rnd in [0, 1)), never below Min. The draw keeps the
// replicas that lost the same broker from all coming back in the same
// instant; the half kept keeps the wait growing.
func (b Backoff) delay(n int, rnd float64) time.Duration {
	step := b.Min
	for i := 1; i < n && step < b.Max; i++ {
		step *= 2
	}
	step = min(step, b.Max)
	d := step/2 + time.Duration(rnd*float64(step-step/2))
	return max(d, b.Min)
}
