package controller

import (
	"sync"
	"time"

	"github.com/phoenix-ops/phoenix/controller/plan"
)

// Event types, in the words an operator reads them.
const (
	EventRollout         = "rollout" // a reconcile found work: desired image and counts
	EventCreate          = "create"  // a server create was accepted
	EventCreateErr       = "create-failed"
	EventReady           = "ready"          // a new server passed its health gate and counts
	EventFailed          = "failed"         // a server went to ERROR
	EventDelete          = "delete"         // a server's delete was requested
	EventTrafficAdd      = "traffic-add"    // a ready server was put into the traffic
	EventDrain           = "drain"          // a server stopped taking new requests
	EventTrafficRemove   = "traffic-remove" // a server left the traffic before its delete
	EventProgress        = "progress"       // counts changed
	EventConverged       = "converged"
	EventError           = "error"               // a reconcile could not complete
	EventHalted          = "halted"              // the group cannot proceed without a human
	EventRolledBack      = "rollout-rolled-back" // a failed rollout's image was rejected; the group goes back
	EventHealBlocked     = "heal-blocked"        // too many servers unhealthy at once to replace any
	EventDeferred        = "rollout-deferred"    // replacements wait: the group is held, a blocker fires, or outside its windows
	EventUndeferred      = "rollout-undeferred"  // replacements deferred may start again
	EventQuotaBlocked    = "quota-blocked"       // the cloud refuses new servers for quota: the rollout waits
	EventQuotaFreed      = "quota-freed"         // a create succeeded again after a quota wait
	EventReimage         = "rebuild-in-place"    // Nova was asked to reimage a server in place (strategy rebuild)
	EventVolumeSnapshot  = "volume-snapshot"     // a snapshot of a data volume was started
	EventHandover        = "handover"            // a data volume started moving to the replacement, or arrived
	EventImageStale      = "image-stale"         // the newest gold image is older than image.max_age
	EventImageFresh      = "image-fresh"         // a gold image within image.max_age again
	EventSnapshot        = "snapshot"            // a snapshot of a server was started before its delete
	EventSnapshotDeleted = "snapshot-deleted"    // retention deleted an old snapshot
	EventLocationDown    = "location-down"       // a location of a placed group is down: its share moved to the others
	EventLocationUp      = "location-up"         // a location is up again: the group rebalances to its weights
	EventImagePromoted   = "image-promoted"      // a stage tagged the image it ran healthy: later stages take it
	EventImageWithdrawn  = "image-withdrawn"     // a stage took its tag back from an image it rejected
	EventPromoteFailed   = "promote-failed"      // Glance refused a stage's tag: the stage waits
)

// Event is one thing that happened in a rollout. Events are for people and
// tools watching; the controller never reads them back to decide anything.
type Event struct {
	Time    time.Time `json:"time"`
	Rollout string    `json:"rollout"`
	Group   string    `json:"group"`
	Type    string    `json:"type"`
	// Server and Name designate the server the event is about.
	Server string `json:"server,omitempty"`
	Name   string `json:"name,omitempty"`
	Image  string `json:"image,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Location is the location of a placed group the event is about.
	Location string `json:"location,omitempty"`
	// ReplacedBy names the new server that took an old one's place;
	// Replaces names the old server a new one took the place of.
	ReplacedBy string       `json:"replaced_by,omitempty"`
	Replaces   string       `json:"replaces,omitempty"`
	Reason     string       `json:"reason,omitempty"`
	Message    string       `json:"message,omitempty"`
	Status     *plan.Status `json:"status,omitempty"`
}

// EventSink receives events. Emit must not block for long: it is called
// from the reconcile loop.
type EventSink interface {
	Emit(Event)
}

// EventFunc adapts a function to an EventSink.
type EventFunc func(Event)

// Emit calls f.
func (f EventFunc) Emit(e Event) { f(e) }

// EventLog keeps every event in memory; tests and the demo read it.
type EventLog struct {
	mu     sync.Mutex
	events []Event
}

// Emit records e.
func (l *EventLog) Emit(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (l *EventLog) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}
