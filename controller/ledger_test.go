package controller

import (
	"testing"
	"time"
)

// The daemon's progress lines pair each old server with its replacement:
// never a server with itself, never with a server that became old, and
// never with a server that was serving before the rollout began.
func TestLedgerPairs(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	t.Run("a heal at rest pairs the sick server with its replacement", func(t *testing.T) {
		l := newLedger(t0)
		for _, id := range []string{"a", "b", "c"} { // a converged group at rest
			l.becameReady(id, "web-"+id, "img1", t0, false)
		}
		l.stillCurrent(map[string]bool{"a": true, "c": true}) // b is sick: old now
		if by := l.deleted("b", "web-b", "img1", t0); by != "" {
			t.Errorf("the sick server was replaced by %q before its replacement served", by)
		}
		if _, replaces := l.becameReady("d", "web-d", "img1", t0, true); replaces != "web-b" {
			t.Errorf("the replacement replaces %q, want web-b", replaces)
		}
	})
	t.Run("a server is never paired with itself", func(t *testing.T) {
		l := newLedger(t0)
		l.becameReady("n1", "web-n1", "img2", t0, true)
		if by := l.deleted("n1", "web-n1", "img2", t0); by == "web-n1" {
			t.Errorf("web-n1 replaced by itself")
		}
	})
	t.Run("a server that became old replaces nothing", func(t *testing.T) {
		l := newLedger(t0)
		l.becameReady("b1", "web-b1", "imgB1", t0, true) // ready on the first new image
		l.stillCurrent(map[string]bool{})                // a second image: b1 is old now
		if by := l.deleted("a1", "web-a1", "imgA", t0); by != "" {
			t.Errorf("web-a1 replaced by %q, an old server", by)
		}
		if _, replaces := l.becameReady("b2", "web-b2", "imgB2", t0, true); replaces != "web-a1" {
			t.Errorf("web-b2 replaces %q, want web-a1", replaces)
		}
	})
}
