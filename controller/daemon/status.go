package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/controller/trigger"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// GroupStatus is one group as /v1/status shows it.
type GroupStatus struct {
	Group        string            `json:"group"`
	DesiredImage provisioner.Image `json:"desired_image"`
	Revision     string            `json:"revision"`
	Rollout      string            `json:"rollout,omitempty"`
	Status       plan.Status       `json:"status"`
	// InProgress is true while the group is not converged; Progress says
	// how far in words: "5/8 current and serving".
	InProgress bool   `json:"rollout_in_progress"`
	Progress   string `json:"progress"`
	Halted     string `json:"halted,omitempty"`
	// RolledBack names the image a rollback rejected and why, while the
	// group runs the image it went back to (DesiredImage).
	RolledBack    string    `json:"rolled_back,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastReconcile time.Time `json:"last_reconcile,omitempty"`
	// ImageAgeSeconds is how old the desired (newest gold) image was at
	// the last reconcile; ImageStale the alert while it is older than the
	// selector's image.max_age.
	ImageAgeSeconds float64 `json:"image_age_seconds,omitempty"`
	ImageStale      string  `json:"image_stale,omitempty"`
	// Protected lists the protected servers left as they are: "name (id):
	// protected: why; would be replaced: why".
	Protected []string `json:"protected,omitempty"`
	// Owner is the replica that reconciles the group, when several
	// share the groups: this one, another, or "" when none holds it.
	Owner string `json:"owner,omitempty"`
	// Locations are where a group placed over several stands in each:
	// up, failing, down or retrying, its share and its servers.
	Locations []controller.LocationStatus `json:"locations,omitempty"`
	// Stage says which newer image waits for a tag another group, a
	// stage before this one, promotes, and how far that group is.
	Stage string `json:"stage,omitempty"`
}

// StatusAPIVersion names the shape of /v1/status: a tool reading it
// checks this before trusting the rest.
const StatusAPIVersion = "v1"

// Status is the whole of /v1/status. Every key is snake_case; the keys
// of Notifications.Handled are the cloud's event types.
type Status struct {
	APIVersion string `json:"api_version"`
	Config     struct {
		Path     string    `json:"path"`
		LoadedAt time.Time `json:"loaded_at"`
		// Refused says why the last reload was refused; the configuration
		// loaded at LoadedAt is the one running.
		Refused string `json:"refused,omitempty"`
		// RestartNeeded names the settings the running configuration
		// changed that apply only after a restart: "controller.listen".
		RestartNeeded []string `json:"restart_needed,omitempty"`
		// Changed names what the reload that loaded the running
		// configuration changed, by field path:
		// "groups[web].rollout.progress_deadline", "controller.interval",
		// "groups[db] (added)". Empty before the first reload.
		Changed []string `json:"changed,omitempty"`
	} `json:"config"`
	Ready  string        `json:"ready"`
	Groups []GroupStatus `json:"groups"`
	// Replica is set when several replicas share the groups.
	Replica *ReplicaStatus `json:"replica,omitempty"`
	// Notifications is the listener on the cloud's message bus, when
	// one is configured.
	Notifications *NotificationsStatus `json:"notifications,omitempty"`
}

// Status reports every group.
func (d *Daemon) Status() Status {
	out := Status{APIVersion: StatusAPIVersion}
	d.mu.Lock()
	out.Config.Path, out.Config.LoadedAt = d.cfg.Path, d.loadedAt
	if d.reloadErr != nil {
		out.Config.Refused = d.reloadErr.Error()
	}
	out.Config.RestartNeeded = slices.Clone(d.restart)
	out.Config.Changed = slices.Clone(d.changed)
	d.mu.Unlock()
	out.Ready = "ok"
	if err := d.Ready(); err != nil {
		out.Ready = err.Error()
	}
	out.Notifications = d.notificationsStatus()
	workers := d.snapshot()
	if d.opts.Coordinator != nil {
		return d.coordinatedStatus(out, workers)
	}
	for _, name := range keys(workers) {
		out.Groups = append(out.Groups, workers[name].status())
	}
	return out
}

func (w *worker) status() GroupStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := GroupStatus{Group: w.group.Name, DesiredImage: w.image, Revision: controller.Revision(w.group), Status: w.last.Status,
		Rollout: w.rec.Rollout(), LastReconcile: w.lastAt}
	st.Status.Desired = w.group.Count
	st.InProgress = !w.reconciled || !w.last.Status.Converged
	st.Progress = fmt.Sprintf("%d/%d current and serving", w.last.Status.Available, w.group.Count)
	if !w.reconciled {
		st.Progress = "not reconciled yet"
	}
	if w.halted != nil {
		st.Halted = w.halted.Error()
	}
	switch {
	case errors.Is(w.lastErr, controller.ErrAwaitingStage):
		st.Status.Waiting = w.lastErr.Error()
	case w.lastErr != nil:
		st.LastError = w.lastErr.Error()
	}
	if img, why := w.rec.Rejected(); img != "" {
		st.RolledBack = fmt.Sprintf("image %s rejected: %s", img, why)
	}
	if p, ok := w.rec.(placed); ok {
		st.Locations = p.Locations()
	}
	st.Stage = w.stage
	f := w.rec.Freshness()
	st.ImageAgeSeconds, st.ImageStale = f.Age.Seconds(), f.Stale
	for _, c := range w.last.Servers {
		if c.Kind == plan.KindKept && strings.HasPrefix(c.Kept, "protected") {
			st.Protected = append(st.Protected, fmt.Sprintf("%s (%s): %s; would be replaced: %s", c.Name, c.ID, c.Kept, c.Reason))
		}
	}
	return st
}

// imageCache holds the resolution of each image selector, refreshed by

// HandlerOptions are what the daemon's HTTP server needs besides the
// daemon.
type HandlerOptions struct {
	// Metrics is what /metrics serves; nil serves no /metrics (it has a
	// listener of its own, MetricsHandler).
	Metrics prometheus.Gatherer
	// Secret returns the webhook secret (it may be reloaded); nil or
	// empty refuses every event.
	Secret func() []byte
	// PreviousSecret returns the secret being rotated out, or nil: events
	// signed with it are accepted too.
	PreviousSecret func() []byte
	Log            *zap.Logger
}

// MetricsHandler serves /metrics and /healthz alone, for a listener that
// Prometheus reaches but the image pipeline and the operators' status
// requests do not.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

// Handler serves /healthz, /readyz, /metrics (when o.Metrics is set),
// /v1/status and POST /v1/events (signed events, dispatched to d).
func (d *Daemon) Handler(o HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	if o.Metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d.Status())
	})
	mux.Handle("/v1/events", &trigger.Handler{Secret: o.Secret, Previous: o.PreviousSecret, Dispatcher: d, Log: o.Log, Refused: d.opts.Metrics.eventRefused})
	return mux
}
