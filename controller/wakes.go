package controller

import (
	"context"
	"sync"

	"github.com/phoenix-ops/phoenix/controller/notifications"
)

// Wakes are the wake-up calls of a one-shot rebuild's groups: a
// notification listener rings them when the cloud says a server changed,
// so a group looks then rather than at its next poll. (The daemon finds
// the group of a server among the servers its workers saw; a one-shot
// run rings every group when the message does not name one.)
type Wakes struct {
	mu sync.Mutex
	ch map[string]chan struct{}
}

// NewWakes returns wake-up calls for no group yet; each group's is made
// when its reconciler first waits on it.
func NewWakes() *Wakes { return &Wakes{ch: map[string]chan struct{}{}} }

// of is group's wake-up channel; nil (never ready) without Wakes.
func (w *Wakes) of(group string) <-chan struct{} {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ch[group]
	if !ok {
		c = make(chan struct{}, 1)
		w.ch[group] = c
	}
	return c
}

// Ring wakes group, or every group when group is "". A group already
// woken stays woken once.
func (w *Wakes) Ring(group string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, c := range w.ch {
		if group == "" || name == group {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// Notified rings for one notification (a notifications.Listener's
// handler): the server's group when its tags or metadata name it, else
// every group.
func (w *Wakes) Notified(_ context.Context, n notifications.Notification) {
	if !n.Settled() {
		return // a step under way: the one that ends it rings
	}
	if n.Kind == notifications.KindInstance {
		if g, ok := GroupOfTags(n.Tags); ok {
			w.Ring(g)
			return
		}
		if g := n.Metadata[MetaGroup]; g != "" {
			w.Ring(g)
			return
		}
	}
	w.Ring("")
}
