package notifications

import (
	"maps"
	"slices"
	"time"
)

// Status is what the listener has seen, for /v1/status and metrics.
type Status struct {
	Connected  bool
	Since      time.Time // when Connected last changed
	Reconnects int       // successful reconnects after the first connect
	LastError  string    // the last connection error, redacted; kept after a reconnect
	Handled    map[string]int
	Ignored    int
	Malformed  int
	// Unbound are the exchanges that did not exist at the last connect
	// and that Phoenix may not create: it binds them once they appear.
	Unbound []string
}

// maxKeys bounds the event types the listener keeps apart (in Handled and
// for logging once): a broker can send any string as an event type.
const maxKeys = 200

// otherEvents counts handled events past maxKeys distinct types.
const otherEvents = "(other)"

// Status is a copy of the listener's status; safe to call at any time.
func (l *Listener) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Handled = maps.Clone(l.status.Handled)
	s.Unbound = slices.Clone(l.status.Unbound)
	if s.Handled == nil {
		s.Handled = map[string]int{}
	}
	return s
}

func (l *Listener) countHandled(eventType string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.status.Handled == nil {
		l.status.Handled = map[string]int{}
	}
	if _, ok := l.status.Handled[eventType]; !ok && len(l.status.Handled) >= maxKeys {
		eventType = otherEvents
	}
	l.status.Handled[eventType]++
}

// countDropped counts a message that was not handled, and says whether it
// is the first of its kind and event type, to be logged.
func (l *Listener) countDropped(malformed bool, eventType string) (first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := "ignored " + eventType
	if malformed {
		l.status.Malformed++
		key = "malformed " + eventType
	} else {
		l.status.Ignored++
	}
	if l.logged[key] || len(l.logged) >= maxKeys {
		return false
	}
	l.logged[key] = true
	return true
}

func (l *Listener) setConnected(now time.Time) (reconnect bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reconnect = l.everConnected
	if reconnect {
		l.status.Reconnects++
	}
	l.everConnected = true
	l.status.Connected, l.status.Since = true, now
	return reconnect
}

// setDisconnected records err (redacted already), and says whether the
// listener was connected until now.
func (l *Listener) setDisconnected(now time.Time, err string) (wasConnected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	wasConnected = l.status.Connected
	if wasConnected {
		l.status.Connected, l.status.Since = false, now
	}
	if err != "" {
		l.status.LastError = err
	}
	return wasConnected
}

func (l *Listener) setUnbound(exchanges []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status.Unbound = slices.Clone(exchanges)
}
