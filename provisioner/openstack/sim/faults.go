package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
)

// FaultAction is what a fault does to a request it hits.
type FaultAction int

const (
	// FailWith answers Status (with Retry-After when RetryAfter > 0)
	// without acting.
	FailWith FaultAction = iota
	// CommitThenFail does the request's work, then answers Status instead
	// of the real answer: a create that happened but answered 500.
	CommitThenFail
	// Hang never answers and does nothing: the request is held until the
	// client goes away or the simulator closes.
	Hang
	// CommitThenHang does the request's work, then never answers.
	CommitThenHang
)

func (a FaultAction) String() string {
	switch a {
	case FailWith:
		return "FailWith"
	case CommitThenFail:
		return "CommitThenFail"
	case Hang:
		return "Hang"
	case CommitThenHang:
		return "CommitThenHang"
	}
	return fmt.Sprintf("FaultAction(%d)", int(a))
}

// Fault makes matching requests misbehave.
type Fault struct {
	// Service is "identity", "compute", "image", "network",
	// "load-balancer" or "block-storage" (Cinder, paths below /volume,
	// such as `^/v3/[^/]+/snapshots$`); "" is any.
	Service string
	// Method is an HTTP method; "" is any.
	Method string
	// Path is a regular expression matched against the URL path below the
	// service root: `^/servers$` matches POST /compute/v2.1/servers and
	// `^/v2/images` the Glance image list. "" matches every path.
	Path   string
	Action FaultAction
	// Status is the answer of FailWith and CommitThenFail: 400 to 599.
	Status int
	// RetryAfter, in seconds, is sent as Retry-After when above zero.
	RetryAfter int
	// Times is how many matching requests the fault hits; 0 is unlimited.
	Times int
	// Fraction, when above zero, is the probability that a matching
	// request is hit (drawn from the seeded generator).
	Fraction float64
}

type fault struct {
	Fault
	re   *regexp.Regexp
	left int // hits left when Times > 0
}

// InjectFault adds a fault. Faults are tried in the order added and the
// first that hits a request applies. It fails on a bad regular expression,
// an unknown action, or an answering action whose Status is not an error
// status.
func (s *Sim) InjectFault(f Fault) error {
	re, err := regexp.Compile(f.Path)
	if err != nil {
		return fmt.Errorf("sim: fault path %q: %w", f.Path, err)
	}
	switch f.Action {
	case FailWith, CommitThenFail:
		if f.Status < 400 || f.Status > 599 {
			return fmt.Errorf("sim: fault %s with status %d: want an error status, 400 to 599", f.Action, f.Status)
		}
	case Hang, CommitThenHang:
	default:
		return fmt.Errorf("sim: unknown fault action %d", int(f.Action))
	}
	s.mu.Lock()
	s.faults = append(s.faults, &fault{Fault: f, re: re, left: f.Times})
	s.mu.Unlock()
	return nil
}

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// FailBootsInZone makes every server created in the availability zone
// from now on go to ERROR after its boot time, with Nova's "No valid
// host" fault, as Nova's scheduler does when a zone has no capacity left
// or its hosts are cut off. ClearBootFaults ends it.
func (s *Sim) FailBootsInZone(zone string) {
	s.mu.Lock()
	if s.failZones == nil {
		s.failZones = map[string]int{}
	}
	if _, ok := s.failZones[zone]; !ok {
		s.failZones[zone] = 0
	}
	s.mu.Unlock()
}

// BootsFailedInZone counts the servers FailBootsInZone sent to ERROR in
// the zone since it was called: every create that went there.
func (s *Sim) BootsFailedInZone(zone string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failZones[zone]
}

// matchFault finds the fault hitting a request and spends one of its
// hits. Call with s.mu held.
func (s *Sim) matchFault(service, method, sub string) *fault {
	for i, f := range s.faults {
		if f.Service != "" && f.Service != service || f.Method != "" && f.Method != method || !f.re.MatchString(sub) {
			continue
		}
		if f.Fraction > 0 && s.rng.Float64() >= f.Fraction {
			continue
		}
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return f
	}
	return nil
}

// writeFault answers with the fault's status in the service's error shape.
func (s *Sim) writeFault(w http.ResponseWriter, service, sub string, f *fault) {
	retry := ""
	if f.RetryAfter > 0 {
		retry = strconv.Itoa(f.RetryAfter)
		w.Header().Set("Retry-After", retry)
	}
	msg := "Simulated fault: " + http.StatusText(f.Status)
	switch service {
	case "compute", "block-storage":
		// Cinder's errors have Nova's shape.
		novaFault(w, f.Status, msg, retry)
	case "network":
		neutronError(w, f.Status, neutronErrorType(f.Status), msg)
	case "image":
		glanceError(w, nil, f.Status, msg)
	case "load-balancer":
		if f.Status == http.StatusConflict {
			msg = "Load Balancer " + s.lbOfPath(sub) + " is immutable and cannot be updated."
		}
		octaviaError(w, f.Status, msg)
	default:
		writeJSON(w, f.Status, keystoneErrorBody(f.Status, msg))
	}
}

// novaFaultNames are the keys Nova wraps its error bodies in; any other
// status is a "computeFault".
var novaFaultNames = map[int]string{
	400: "badRequest",
	401: "unauthorized",
	403: "forbidden",
	404: "itemNotFound",
	405: "badMethod",
	409: "conflictingRequest",
	413: "overLimit",
	415: "badMediaType",
	429: "overLimit",
	501: "notImplemented",
	503: "serviceUnavailable",
}

// novaError answers in Nova's error shape: {"<kind>": {"code", "message"}}.
func novaError(w http.ResponseWriter, status int, msg string) {
	novaFault(w, status, msg, "")
}

func novaFault(w http.ResponseWriter, status int, msg, retryAfter string) {
	kind, ok := novaFaultNames[status]
	if !ok {
		kind = "computeFault"
	}
	body := map[string]any{"code": status, "message": msg}
	if retryAfter != "" && (status == 413 || status == 429) {
		body["retryAfter"] = retryAfter
	}
	writeJSON(w, status, map[string]any{kind: body})
}

func neutronErrorType(status int) string {
	switch status {
	case 400:
		return "HTTPBadRequest"
	case 404:
		return "HTTPNotFound"
	case 409:
		return "HTTPConflict"
	case 429:
		return "HTTPTooManyRequests"
	case 503:
		return "HTTPServiceUnavailable"
	}
	return "HTTPInternalServerError"
}
