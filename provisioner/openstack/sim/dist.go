package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// Dist draws a duration, e.g. how long one server takes to boot.
type Dist func(r *rand.Rand) time.Duration

// Fixed always draws d.
func Fixed(d time.Duration) Dist {
	return func(*rand.Rand) time.Duration { return d }
}

// LogNormal draws from a log-normal distribution with the given median and
// 99th percentile: most servers boot near the median, a few take much
// longer, as on real clouds.
func LogNormal(median, p99 time.Duration) Dist {
	if median <= 0 {
		return Fixed(0)
	}
	if p99 < median {
		p99 = median
	}
	mu := math.Log(float64(median))
	// The 99th percentile of a normal distribution is 2.3263 standard
	// deviations above its mean.
	sigma := math.Log(float64(p99)/float64(median)) / 2.3263
	return func(r *rand.Rand) time.Duration {
		return time.Duration(math.Exp(mu + sigma*r.NormFloat64()))
	}
}
