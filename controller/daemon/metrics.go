package daemon

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

// Metrics are what the daemon exposes on /metrics. Counters and
// histograms move as things happen; the gauges of servers, rollouts and
// health probes are read from the workers at each scrape, so they always
// say what the last reconcile saw. A nil *Metrics records nothing.
//
// Every counter whose label values are known in advance (per group once
// the groups are loaded, per event type, per refusal code) starts at 0,
// so that rate(), increase() and absent() in alert rules see a series
// from the first scrape on, not from the first time something happened.
type Metrics struct {
	reconcileSeconds *prometheus.HistogramVec
	reconciles       *prometheus.CounterVec
	replacements     *prometheus.CounterVec
	cloudRequests    *prometheus.CounterVec
	cloudSeconds     *prometheus.HistogramVec
	events           *prometheus.CounterVec
	refused          *prometheus.CounterVec
	woken            *prometheus.CounterVec
	promotions       *prometheus.CounterVec
	configOK         prometheus.Gauge
	configLoadedAt   prometheus.Gauge

	daemon *Daemon
	notes  *Notifier
}

// NewMetrics registers Phoenix's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "phoenix_reconcile_duration_seconds", Help: "Time one reconcile of one group took.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"group"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_reconciles_total", Help: "Reconciles by group and result (ok, error).",
		}, []string{"group", "result"}),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_replacements_total", Help: "Servers taken out to be replaced, by group and reason (image, spec, forced, event, compromised, failed, surplus).",
		}, []string{"group", "reason"}),
		cloudRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_cloud_requests_total", Help: "Requests to the cloud API, every attempt, by service, method and HTTP status (0: no answer).",
		}, []string{"service", "method", "status"}),
		cloudSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "phoenix_cloud_request_duration_seconds", Help: "Time of one attempt of one cloud API request.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2.5, 12),
		}, []string{"service"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_events_accepted_total", Help: "Accepted events by type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_events_refused_total", Help: "Requests to /v1/events not accepted, by HTTP status code (401: bad signature or clock, 503: not configured or cannot act now).",
		}, []string{"code"}),
		woken: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_notifications_woke_total", Help: "Times a notification from the cloud woke a group (by group), or the image watch (group \"image\").",
		}, []string{"group"}),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phoenix_promotions_total", Help: "A stage's tags in Glance, by group and result: promoted (an image it ran healthy got its promote.tag), withdrawn (taken back from an image it rejected), refused (Glance refused or did not answer; the stage tries again).",
		}, []string{"group", "result"}),
		configOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "phoenix_config_last_reload_successful", Help: "1 when the last configuration (re)load was accepted, 0 when it was refused and the previous one runs on.",
		}),
		configLoadedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "phoenix_config_loaded_timestamp_seconds", Help: "When the running configuration was loaded.",
		}),
	}
	reg.MustRegister(m.reconcileSeconds, m.reconciles, m.replacements, m.cloudRequests, m.cloudSeconds, m.events, m.refused, m.woken,
		m.promotions, m.configOK, m.configLoadedAt, stateCollector{m})
	for _, typ := range []string{trigger.TypeImagePublished, trigger.TypeSecurityPatch, trigger.TypeInstanceCompromised} {
		m.events.WithLabelValues(typ)
	}
	for _, code := range trigger.RefusalCodes {
		m.refused.WithLabelValues(strconv.Itoa(code))
	}
	m.woken.WithLabelValues("image")
	return m
}

// groupsLoaded starts each group's counters at 0. Counters of a group
// removed since stay as they were: a counter never goes back.
func (m *Metrics) groupsLoaded(groups []string) {
	if m == nil {
		return
	}
	for _, g := range groups {
		m.reconcileSeconds.WithLabelValues(g)
		m.reconciles.WithLabelValues(g, "ok")
		m.reconciles.WithLabelValues(g, "error")
		for _, reason := range replacementReasons {
			m.replacements.WithLabelValues(g, reason)
		}
		m.woken.WithLabelValues(g)
		for _, result := range promotionResults {
			m.promotions.WithLabelValues(g, result)
		}
	}
}

var promotionResults = []string{"promoted", "withdrawn", "refused"}

// WatchNotices makes /metrics count what n delivered, failed and dropped.
func (m *Metrics) WatchNotices(n *Notifier) {
	if m != nil {
		m.notes = n
	}
}

// eventRefused counts one request to /v1/events not accepted.
func (m *Metrics) eventRefused(status int) {
	if m != nil {
		m.refused.WithLabelValues(strconv.Itoa(status)).Inc()
	}
}

// Watch makes the scrape-time gauges read d's workers.
func (m *Metrics) Watch(d *Daemon) {
	if m != nil {
		m.daemon = d
	}
}

func (m *Metrics) woke(group string) {
	if m != nil {
		m.woken.WithLabelValues(group).Inc()
	}
}

// CloudRequest records one attempt of one cloud request.
func (m *Metrics) CloudRequest(service, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.cloudRequests.WithLabelValues(service, method, strconv.Itoa(status)).Inc()
	m.cloudSeconds.WithLabelValues(service).Observe(d.Seconds())
}

func (m *Metrics) reconciled(group string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.reconcileSeconds.WithLabelValues(group).Observe(d.Seconds())
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reconciles.WithLabelValues(group, result).Inc()
}

func (m *Metrics) triggered(typ string) {
	if m != nil {
		m.events.WithLabelValues(typ).Inc()
	}
}

func (m *Metrics) configLoaded(ok bool, at time.Time) {
	if m == nil {
		return
	}
	if !ok {
		m.configOK.Set(0)
		return
	}
	m.configOK.Set(1)
	m.configLoadedAt.Set(float64(at.Unix()))
}

// event counts replacements from the events a reconciler emits: a server
// is counted once, when it is taken out (its drain, or its delete when it
// had no drain).
func (m *Metrics) event(e controller.Event) {
	if m == nil {
		return
	}
	switch e.Type {
	case controller.EventImagePromoted:
		m.promotions.WithLabelValues(e.Group, "promoted").Inc()
		return
	case controller.EventImageWithdrawn:
		m.promotions.WithLabelValues(e.Group, "withdrawn").Inc()
		return
	case controller.EventPromoteFailed:
		m.promotions.WithLabelValues(e.Group, "refused").Inc()
		return
	case controller.EventDrain:
	case controller.EventDelete:
		if strings.HasPrefix(e.Reason, "drained: ") || strings.HasPrefix(e.Reason, "resume") {
			return
		}
	default:
		return
	}
	m.replacements.WithLabelValues(e.Group, replacementReason(e.Reason)).Inc()
}

// replacementReasons are every value replacementReason returns.
var replacementReasons = []string{"image", "spec", "compromised", "event", "forced", "failed", "surplus", "age", "heal", "other"}

// replacementReason sorts a plan's reason into a few label values.
func replacementReason(reason string) string {
	switch {
	case strings.HasPrefix(reason, "image "):
		return "image"
	case strings.HasPrefix(reason, "spec revision"):
		return "spec"
	case strings.HasPrefix(reason, "rebuild requested: built like compromised"), strings.HasPrefix(reason, "compromised"):
		return "compromised"
	case strings.HasPrefix(reason, "rebuild requested"):
		return "event"
	case strings.HasPrefix(reason, "created "):
		return "forced"
	case strings.HasPrefix(reason, "failed"):
		return "failed"
	case strings.HasPrefix(reason, "surplus"):
		return "surplus"
	case strings.HasPrefix(reason, "age:"):
		return "age"
	case strings.HasPrefix(reason, "unhealthy"):
		return "heal"
	}
	return "other"
}

// stateCollector reads the workers at scrape time.
type stateCollector struct{ m *Metrics }

var (
	descServers = prometheus.NewDesc("phoenix_servers", "Servers of a group by spec revision and state (current, old, failed, deleting, draining), as the last reconcile saw them.",
		[]string{"group", "revision", "state"}, nil)
	descInProgress = prometheus.NewDesc("phoenix_rollout_in_progress", "1 while a group has not converged.", []string{"group"}, nil)
	descHalted     = prometheus.NewDesc("phoenix_rollout_halted", "1 when a group cannot proceed without a human.", []string{"group"}, nil)
	descUnhealthy  = prometheus.NewDesc("phoenix_servers_unhealthy", "ACTIVE servers of a group failing their health check.", []string{"group"}, nil)
	descHealBlock  = prometheus.NewDesc("phoenix_heal_blocked", "1 when more servers of a group are unhealthy than health.max_unhealthy allows, so none is replaced: an alert.", []string{"group"}, nil)
	descQuotaBlock = prometheus.NewDesc("phoenix_quota_blocked", "1 while a group's rollout waits because the cloud refuses new servers for quota; the wait does not count against progress_deadline.", []string{"group"}, nil)
	descSteered    = prometheus.NewDesc("phoenix_rollout_steered", "1 while no voluntary replacement of a group may start, by cause (held, blocked, window).", []string{"group", "cause"}, nil)
	descDeferred   = prometheus.NewDesc("phoenix_servers_deferred", "Servers of a group whose replacement waits for a hold, a blocker or a maintenance window.", []string{"group"}, nil)
	descProtected  = prometheus.NewDesc("phoenix_servers_protected", "Protected servers of a group left as they are although they would be replaced.", []string{"group"}, nil)
	descProbes     = prometheus.NewDesc("phoenix_health_probes_total", "Health probes by group and result (pass, fail).", []string{"group", "result"}, nil)
	descImageAge   = prometheus.NewDesc("phoenix_gold_image_age_seconds", "Age of the newest image a group's selector matched, at its last reconcile.", []string{"group", "image"}, nil)
	descRejected   = prometheus.NewDesc("phoenix_rollout_rejected", "1 while a group runs the image it went back to because a rollback rejected the image its selector picks (labelled).", []string{"group", "image"}, nil)
	descImageStale = prometheus.NewDesc("phoenix_gold_image_stale", "1 while a group's newest gold image is older than its image.max_age: an alert.", []string{"group"}, nil)
	// Only for groups placed over several locations.
	descLocationUp      = prometheus.NewDesc("phoenix_location_up", "1 while a location of a placed group is up; 0 while it is failing, down or retrying after failing creates (state labelled).", []string{"group", "location", "state"}, nil)
	descLocationServers = prometheus.NewDesc("phoenix_location_servers", "Servers of a placed group in each location by what they are: share (by weight, among the locations not down), target (what the location keeps this round), serving.", []string{"group", "location", "kind"}, nil)
	// Only when several replicas share the groups.
	descOwned   = prometheus.NewDesc("phoenix_group_owned", "1 when this replica reconciles the group, 0 when another does (or none).", []string{"group"}, nil)
	descReplica = prometheus.NewDesc("phoenix_replica_info", "This replica's id; 1.", []string{"replica"}, nil)
	descFenced  = prometheus.NewDesc("phoenix_replica_fenced", "1 while this replica cannot prove what it owns (lease not renewed, or etcd without quorum or out of reach) and so changes nothing in the cloud.", []string{"replica"}, nil)

	descLastSuccess = prometheus.NewDesc("phoenix_group_last_reconcile_success_timestamp_seconds", "When a group's last reconcile without error ended (Unix time); 0 until its first since the group's worker started.", []string{"group"}, nil)
	descNotices     = prometheus.NewDesc("phoenix_notices_total", "Notices to controller.notify URLs by result: delivered, failed (after the retries; one per URL) or dropped (the queue was full).", []string{"result"}, nil)

	descNotesConnected  = prometheus.NewDesc("phoenix_notifications_connected", "1 while the listener is connected to the cloud's RabbitMQ; 0 while it reconnects (polling goes on).", nil, nil)
	descNotesReconnects = prometheus.NewDesc("phoenix_notifications_reconnects_total", "Connections to the cloud's RabbitMQ made again after a loss.", nil, nil)
	descNotesHandled    = prometheus.NewDesc("phoenix_notifications_received_total", "Notifications from the cloud handled, by event type.", []string{"event_type"}, nil)
	descNotesRefused    = prometheus.NewDesc("phoenix_notifications_refused_total", "Messages not acted on, by reason: malformed (could not be parsed) or ignored (an event type Phoenix does not act on).", []string{"reason"}, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descServers
	ch <- descInProgress
	ch <- descHalted
	ch <- descProbes
	ch <- descUnhealthy
	ch <- descHealBlock
	ch <- descQuotaBlock
	ch <- descSteered
	ch <- descDeferred
	ch <- descProtected
	ch <- descImageAge
	ch <- descImageStale
	ch <- descRejected
	ch <- descLocationUp
	ch <- descLocationServers
	ch <- descOwned
	ch <- descReplica
	ch <- descFenced
	ch <- descLastSuccess
	ch <- descNotices
	ch <- descNotesConnected
	ch <- descNotesReconnects
	ch <- descNotesHandled
	ch <- descNotesRefused
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	if n := c.m.notes; n != nil {
		delivered, failed, dropped := n.counts()
		ch <- prometheus.MustNewConstMetric(descNotices, prometheus.CounterValue, float64(delivered), "delivered")
		ch <- prometheus.MustNewConstMetric(descNotices, prometheus.CounterValue, float64(failed), "failed")
		ch <- prometheus.MustNewConstMetric(descNotices, prometheus.CounterValue, float64(dropped), "dropped")
	}
	d := c.m.daemon
	if d == nil {
		return
	}
	if s := d.notificationsStatus(); s != nil {
		ch <- prometheus.MustNewConstMetric(descNotesConnected, prometheus.GaugeValue, b2f(s.Connected))
		ch <- prometheus.MustNewConstMetric(descNotesReconnects, prometheus.CounterValue, float64(s.Reconnects))
		for eventType, n := range s.Handled {
			ch <- prometheus.MustNewConstMetric(descNotesHandled, prometheus.CounterValue, float64(n), eventType)
		}
		ch <- prometheus.MustNewConstMetric(descNotesRefused, prometheus.CounterValue, float64(s.Malformed), "malformed")
		ch <- prometheus.MustNewConstMetric(descNotesRefused, prometheus.CounterValue, float64(s.Ignored), "ignored")
	}
	workers := d.snapshot()
	if co := d.opts.Coordinator; co != nil {
		ch <- prometheus.MustNewConstMetric(descReplica, prometheus.GaugeValue, 1, co.ID())
		ch <- prometheus.MustNewConstMetric(descFenced, prometheus.GaugeValue, b2f(co.Health() != nil), co.ID())
		for _, g := range d.groupNames() {
			_, owned := workers[g]
			ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, b2f(owned), g)
		}
	}
	for name, w := range workers {
		w.mu.Lock()
		dec, reconciled, halted, lastOK := w.last, w.reconciled, w.halted != nil, w.lastOK
		w.mu.Unlock()
		var okAt float64
		if !lastOK.IsZero() {
			okAt = float64(lastOK.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, okAt, name)
		counts := map[[2]string]int{}
		for _, s := range dec.Servers {
			rev := s.Revision
			if rev == "" {
				rev = "none"
			}
			counts[[2]string{rev, s.Kind.String()}]++
		}
		for k, n := range counts {
			ch <- prometheus.MustNewConstMetric(descServers, prometheus.GaugeValue, float64(n), name, k[0], k[1])
		}
		ch <- prometheus.MustNewConstMetric(descInProgress, prometheus.GaugeValue, b2f(!reconciled || !dec.Status.Converged), name)
		ch <- prometheus.MustNewConstMetric(descHalted, prometheus.GaugeValue, b2f(halted), name)
		ch <- prometheus.MustNewConstMetric(descUnhealthy, prometheus.GaugeValue, float64(dec.Status.Unhealthy), name)
		ch <- prometheus.MustNewConstMetric(descHealBlock, prometheus.GaugeValue, b2f(dec.Status.HealBlocked), name)
		if p, ok := w.rec.(placed); ok {
			for _, l := range p.Locations() {
				ch <- prometheus.MustNewConstMetric(descLocationUp, prometheus.GaugeValue, b2f(l.State == plan.LocationUp), name, l.Name, l.State)
				ch <- prometheus.MustNewConstMetric(descLocationServers, prometheus.GaugeValue, float64(l.Share), name, l.Name, "share")
				ch <- prometheus.MustNewConstMetric(descLocationServers, prometheus.GaugeValue, float64(l.Count), name, l.Name, "target")
				ch <- prometheus.MustNewConstMetric(descLocationServers, prometheus.GaugeValue, float64(l.Serving), name, l.Name, "serving")
			}
		}
		if img, _ := w.rec.Rejected(); img != "" {
			ch <- prometheus.MustNewConstMetric(descRejected, prometheus.GaugeValue, 1, name, img)
		}
		ch <- prometheus.MustNewConstMetric(descQuotaBlock, prometheus.GaugeValue, b2f(quotaWait(dec.Status) && !halted), name)
		for _, cause := range []string{"held", "blocked", "window"} {
			ch <- prometheus.MustNewConstMetric(descSteered, prometheus.GaugeValue, b2f(steeredBy(dec.Status) == cause), name, cause)
		}
		ch <- prometheus.MustNewConstMetric(descDeferred, prometheus.GaugeValue, float64(dec.Status.Deferred), name)
		ch <- prometheus.MustNewConstMetric(descProtected, prometheus.GaugeValue, float64(dec.Status.Protected), name)
		if f := w.rec.Freshness(); f.Image.ID != "" {
			ch <- prometheus.MustNewConstMetric(descImageAge, prometheus.GaugeValue, f.Age.Seconds(), name, f.Image.ID)
			ch <- prometheus.MustNewConstMetric(descImageStale, prometheus.GaugeValue, b2f(f.Stale != ""), name)
		}
		st := w.rec.ProbeStats()
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.CounterValue, float64(st.Passes), name, "pass")
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.CounterValue, float64(st.Failures), name, "fail")
	}
}

// steeredBy names what keeps voluntary replacements from starting: held,
// blocked, window, or "".
func steeredBy(s plan.Status) string {
	switch {
	case strings.HasPrefix(s.Steering, "held"):
		return "held"
	case strings.HasPrefix(s.Steering, "blocked"):
		return "blocked"
	case strings.HasPrefix(s.Steering, "outside"):
		return "window"
	}
	return ""
}

// quotaWait reports whether the group's rollout waits for quota.
func quotaWait(s plan.Status) bool { return strings.HasPrefix(s.Waiting, "quota") }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
