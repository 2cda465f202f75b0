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
	// FailWith answers Status without acting.
	FailWith FaultAction = iota
	// CommitThenFail does the request's work, then answers Status instead
	// of the real answer: a create that happened but answered 500.
	CommitThenFail
	// Hang never answers and does nothing: the request is held until the
	// client goes away or the simulator closes.
	Hang
	// CommitThenHang does the work, then never answers.
	CommitThenHang
)

// Fault makes matching requests misbehave.
type Fault struct {
	// Service is "identity", "compute", "image" or "network"; "" is any.
	Service string
	// Method is an HTTP method; "" is any.
	Method string
	// Path is a regular expression matched against the path below the
	// service root: `^/servers$` matches POST /compute/v2.1/servers.
	Path   string
	Action FaultAction
	// Status answers FailWith and CommitThenFail.
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
	left int // remaining hits when Times > 0
}

// InjectFault adds a fault; faults are tried in the order added and the
// first that hits a request applies.
func (s *Sim) InjectFault(f Fault) error {
	re, err := regexp.Compile(f.Path)
	if err != nil {
		return fmt.Errorf("fault path %q: %w", f.Path, err)
	}
	if (f.Action == FailWith || f.Action == CommitThenFail) && (f.Status < 400 || f.Status > 599) {
		return fmt.Errorf("fault status %d: expected an error status from 400 to 599", f.Status)
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
func (s *Sim) writeFault(w http.ResponseWriter, service string, f *fault) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	msg := fmt.Sprintf("Simulated fault: %s", http.StatusText(f.Status))
	switch service {
	case "compute":
		novaError(w, f.Status, msg)
	case "network":
		writeJSON(w, f.Status, map[string]any{"NeutronError": map[string]any{"type": "HTTPError", "message": msg, "detail": ""}})
	case "image":
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, "%d %s\n\n%s\n", f.Status, http.StatusText(f.Status), msg)
	default:
		writeJSON(w, f.Status, map[string]any{"error": map[string]any{"code": f.Status, "title": http.StatusText(f.Status), "message": msg}})
	}
}

// novaError answers in Nova's error shape: {"<kind>": {"code", "message"}}.
func novaError(w http.ResponseWriter, status int, msg string) {
	kind := "computeFault"
	switch status {
	case http.StatusBadRequest:
		kind = "badRequest"
	case http.StatusForbidden:
		kind = "forbidden"
	case http.StatusNotFound:
		kind = "itemNotFound"
	case http.StatusConflict:
		kind = "conflictingRequest"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		kind = "overLimit"
	case http.StatusNotAcceptable:
		kind = "notAcceptable"
	}
	writeJSON(w, status, map[string]any{kind: map[string]any{"code": status, "message": msg}})
}
