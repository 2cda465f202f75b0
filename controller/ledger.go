package controller

import (
	"slices"
	"sync"
	"time"
)

// Pair records that an old server was replaced by a new one.
type Pair struct {
	Old, OldImage string
	// New is empty when the old server went without a replacement (the
	// group converged with it gone, e.g. a surplus server).
	New, NewImage string
	// NewReadyIn is how long the new server took from create to passing
	// its health gate, when this run created it.
	NewReadyIn time.Duration
	// At is when the replacement was complete — the later of the old
	// server's delete and the new one's readiness — since the run started.
	At time.Duration
}

// ledger pairs old servers with their replacements, for reports only.
// Surge-first rollouts make a new server ready before an old one goes;
// in-place ones delete first; either way the n-th old server to go is
// paired with the n-th new server to be ready that is still current. A
// server is never paired with itself, and a ready server that became old
// (a second image, a heal) replaces nothing.
type ledger struct {
	mu        sync.Mutex
	started   time.Time
	created   map[string]time.Time // by this run, server ID → create time
	ready     map[string]bool
	freshNew  []newServer // ready, waiting for an old server to replace
	goneOld   []Pair      // deleted, waiting for their replacement
	completed []Pair
}

type newServer struct {
	id, name, image string
	readyIn         time.Duration
}

func newLedger(started time.Time) *ledger {
	return &ledger{started: started, created: map[string]time.Time{}, ready: map[string]bool{}}
}

func (l *ledger) createdServer(id string, at time.Time) {
	l.mu.Lock()
	l.created[id] = at
	l.mu.Unlock()
}

// becameReady records a server passing its health gate for the first
// time; it returns false when it had already, and the name of the old
// server it completes the replacement of, if any. Only a server that
// became ready during a rollout (queue) replaces one: at rest, the servers
// of a converged group replace nothing.
func (l *ledger) becameReady(id, name, image string, at time.Time, queue bool) (first bool, replaces string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ready[id] {
		return false, ""
	}
	l.ready[id] = true
	if !queue {
		return true, ""
	}
	n := newServer{id: id, name: name, image: image}
	if c, ok := l.created[id]; ok {
		n.readyIn = at.Sub(c)
	}
	if len(l.goneOld) > 0 {
		p := l.goneOld[0]
		l.goneOld = l.goneOld[1:]
		p.New, p.NewImage, p.NewReadyIn, p.At = n.name, n.image, n.readyIn, at.Sub(l.started)
		l.completed = append(l.completed, p)
		return true, p.Old
	}
	l.freshNew = append(l.freshNew, n)
	return true, ""
}

// stillCurrent forgets the ready servers waiting for an old one that are
// no longer current: they replace nothing now.
func (l *ledger) stillCurrent(current map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.freshNew = slices.DeleteFunc(l.freshNew, func(n newServer) bool { return !current[n.id] })
}

// deleted records an old server's delete (or drain) and returns the new
// server that replaces it, if one is already ready.
func (l *ledger) deleted(id, name, image string, at time.Time) (replacedBy string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := Pair{Old: name, OldImage: image, At: at.Sub(l.started)}
	l.freshNew = slices.DeleteFunc(l.freshNew, func(n newServer) bool { return n.id == id })
	if len(l.freshNew) > 0 {
		n := l.freshNew[0]
		l.freshNew = l.freshNew[1:]
		p.New, p.NewImage, p.NewReadyIn = n.name, n.image, n.readyIn
		l.completed = append(l.completed, p)
		return n.name
	}
	l.goneOld = append(l.goneOld, p)
	return ""
}

// converged closes the books: old servers still waiting went without a
// replacement, ready servers with no old one to replace were not
// replacements, and servers no longer in the group are forgotten, so a
// long-running controller does not grow.
func (l *ledger) converged(current []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.completed = append(l.completed, l.goneOld...)
	l.goneOld, l.freshNew = nil, nil
	keep := make(map[string]bool, len(current))
	for _, id := range current {
		keep[id] = true
	}
	for id := range l.created {
		if !keep[id] {
			delete(l.created, id)
		}
	}
	for id := range l.ready {
		if !keep[id] {
			delete(l.ready, id)
		}
	}
}

func (l *ledger) pairs() []Pair {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Pair(nil), l.completed...)
}
