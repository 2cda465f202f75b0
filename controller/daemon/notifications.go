package daemon

import (
	"context"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/notifications"
)

// NotificationSource is the listener on the cloud's message bus, as the
// daemon runs it: it hands each notification to Daemon.Notified.
type NotificationSource interface {
	Run(ctx context.Context) error
	Status() notifications.Status
}

// NotificationsStatus is the listener as /v1/status shows it.
type NotificationsStatus struct {
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	// Reconnects counts the connections made again after a loss (the
	// broker restarted, the network dropped).
	Reconnects int            `json:"reconnects"`
	LastError  string         `json:"last_error,omitempty"`
	Handled    map[string]int `json:"handled,omitempty"`
	Ignored    int            `json:"ignored"`
	Malformed  int            `json:"malformed"`
	// Unbound are exchanges not there yet, bound once they appear.
	Unbound []string `json:"unbound,omitempty"`
}

// Listen has Run run src for as long as the daemon runs. Call it before
// Run.
func (d *Daemon) Listen(src NotificationSource) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notes = src
}

func (d *Daemon) runListener(ctx context.Context) {
	d.mu.Lock()
	src := d.notes
	d.mu.Unlock()
	if src == nil {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := src.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("the notification listener stopped; polling goes on", zap.Error(err))
		}
	}()
}

// notificationsStatus is the listener's state, nil without one.
func (d *Daemon) notificationsStatus() *NotificationsStatus {
	d.mu.Lock()
	src := d.notes
	d.mu.Unlock()
	if src == nil {
		return nil
	}
	s := src.Status()
	return &NotificationsStatus{Connected: s.Connected, Since: s.Since, Reconnects: s.Reconnects, LastError: s.LastError,
		Handled: maps.Clone(s.Handled), Ignored: s.Ignored, Malformed: s.Malformed, Unbound: s.Unbound}
}

// Notified takes one notification from the cloud. It only wakes: an image
// event has the selectors resolved again (as image.published does), an
// instance event has the server's group reconcile now. What to do is
// decided from the servers the group then lists, so a notification lost,
// late or repeated changes nothing but when Phoenix looks.
func (d *Daemon) Notified(_ context.Context, n notifications.Notification) {
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	if !running {
		return // the workers' first rounds look anyway
	}
	switch n.Kind {
	case notifications.KindImage:
		d.images.invalidate()
		d.pokeWatch()
		d.opts.Metrics.woke("image")
	case notifications.KindInstance:
		if !n.Settled() {
			return // a step under way: the one that ends it wakes
		}
		w := d.groupOf(n)
		if w == nil {
			// Not a server of a group run here: another replica's, or
			// not Phoenix's at all.
			return
		}
		w.poke()
		d.opts.Metrics.woke(w.group.Name)
		d.log.Debug("woken by the cloud", zap.String("group", w.group.Name), zap.String("server", n.ServerID),
			zap.String("event_type", n.EventType), zap.String("state", n.State))
	}
}

// groupOf finds the worker whose group the notified server belongs to: by
// its group tag or metadata when the payload carries them, else by the
// servers the groups saw last.
func (d *Daemon) groupOf(n notifications.Notification) *worker {
	workers := d.snapshot()
	if name, ok := controller.GroupOfTags(n.Tags); ok {
		return workers[name]
	}
	if name := n.Metadata[controller.MetaGroup]; name != "" {
		return workers[name]
	}
	for _, w := range workers {
		if slices.ContainsFunc(w.rec.Seen(), func(s controller.Seen) bool { return s.ID == n.ServerID }) {
			return w
		}
	}
	return nil
}
