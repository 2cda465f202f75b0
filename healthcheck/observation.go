package healthcheck

import (
	"strconv"
	"time"
)

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
	case Unknown:
		return "unknown"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Policy is how often and how patiently a server is probed.
type Policy struct {
	// Interval between the starts of two probes of one server (5s when
	// unset). A probe that outlasts it is followed at once by the next;
	// probes of one server never overlap.
	Interval time.Duration
	// RiseInterval, when above zero and shorter than Interval, is the
	// interval until the server is first healthy: a new server is found
	// healthy sooner (the threshold of passes still applies), and a
	// serving one costs no more than before.
	RiseInterval time.Duration
	// Timeout of one probe, as its context's deadline (2s when unset).
	Timeout time.Duration
	// HealthyThreshold passes in a row make a server healthy (< 1 acts
	// as 1).
	HealthyThreshold int
	// UnhealthyThreshold counted failures in a row make it unhealthy (< 1
	// acts as 1).
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

// Record folds one probe result, taken at now, into the observation and
// returns the result. since is when the server became ACTIVE: failures
// before since+Grace are noted (LastError) but not counted; a failure at
// exactly since+Grace counts. A pass always counts. A state is entered, and
// Since set to now, only when the threshold is reached from another state:
// further passes of a healthy server (or failures of an unhealthy one) keep
// Since. Record is pure, so the verdict rules are tested as a table.
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
