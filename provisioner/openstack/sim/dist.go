package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// Dist draws a duration, e.g. how long one server takes to boot. The
// simulator calls it with its own seeded generator, one draw per server.
type Dist func(r *rand.Rand) time.Duration

// Fixed always draws d.
func Fixed(d time.Duration) Dist {
	return func(*rand.Rand) time.Duration { return d }
}

// z99 is how many standard deviations the 99th percentile of a normal
// distribution lies above its mean.
const z99 = 2.326348

// LogNormal draws from a log-normal distribution with the given median and
// 99th percentile: most servers boot near the median and a few take much
// longer, as on real clouds. A p99 below the median is taken as the
// median (no spread).
func LogNormal(median, p99 time.Duration) Dist {
	if median <= 0 {
		return Fixed(0)
	}
	p99 = max(p99, median)
	mu := math.Log(float64(median))
	sigma := math.Log(float64(p99)/float64(median)) / z99
	return func(r *rand.Rand) time.Duration {
		return time.Duration(math.Exp(mu + sigma*r.NormFloat64()))
	}
}
