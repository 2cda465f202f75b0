package healthcheck

import "time"

// State is a verdict on a server's health.
type State int

const (
	// Unknown: not enough probes yet for either verdict.
	Unknown State = iota
	// Healthy: HealthyThreshold passes in a row.
	Healthy
	// Unhealthy: UnhealthyThreshold counted failures in a row.
	Unhealthy
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Policy is how often and how patiently a server is probed.
type Policy struct {
	// Interval between the starts of two probes of one server.
	Interval time.Duration
	// Timeout of one probe.
	Timeout time.Duration
	// HealthyThreshold passes in a row make a server healthy.
	HealthyThreshold int
	// UnhealthyThreshold counted failures in a row make it unhealthy.
	UnhealthyThreshold int
	// Grace after Target.Since during which failures are not counted.
	Grace time.Duration
}

// Observation is what is known of one server's health.
type Observation struct {
	State State
	// Since is when State was entered (zero while Unknown).
	Since     time.Time
	LastProbe time.Time
	// LastError is the last failed probe's error, "" after a pass.
	LastError       string
	ConsecutivePass int
	ConsecutiveFail int
}

// Record folds one probe result, taken at now, into the observation. since
// is when the server became ACTIVE: failures before since+Grace are noted
// but not counted. It is pure, so the verdict rules are tested as a table.
func (o Observation) Record(now time.Time, err error, p Policy, since time.Time) Observation {
	o.LastProbe = now
	if err == nil {
		o.LastError = ""
		o.ConsecutivePass++
		o.ConsecutiveFail = 0
		if o.State != Healthy && o.ConsecutivePass >= max(1, p.HealthyThreshold) {
			o.State, o.Since = Healthy, now
		}
		return o
	}
	o.LastError = err.Error()
	o.ConsecutivePass = 0
	if now.Before(since.Add(p.Grace)) {
		return o
	}
	o.ConsecutiveFail++
	if o.State != Unhealthy && o.ConsecutiveFail >= max(1, p.UnhealthyThreshold) {
		o.State, o.Since = Unhealthy, now
	}
	return o
}
