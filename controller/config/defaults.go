package config

import (
	"fmt"
	"slices"
	"time"
)

// Defaults, as documented in doc.go.
const (
	DefaultMaxSurge            = 1
	DefaultMaxUnavailable      = 0
	DefaultHealthInterval      = 5 * time.Second
	DefaultHealthTimeout       = 2 * time.Second
	DefaultHealthyThreshold    = 3
	DefaultUnhealthyThreshold  = 3
	DefaultGrace               = 60 * time.Second
	DefaultHTTPPath            = "/"
	DefaultDrain               = 30 * time.Second
	DefaultInterval            = time.Minute
	DefaultBackupKeep          = 3
	DefaultBackupTimeout       = 30 * time.Minute
	DefaultMaxUnhealthyPercent = 40
	DefaultMaxFailures         = 3
	DefaultProgressDeadline    = 10 * time.Minute
	DefaultWatch               = 10 * time.Minute
	DefaultCreateBackoffMax    = time.Minute
	DefaultParallelGroups      = 4
	DefaultMemberWeight        = 1
	DefaultEtcdPrefix          = "/phoenix/"
	DefaultLeaseTTL            = 15 * time.Second
	DefaultBlockerTimeout      = 10 * time.Second
	DefaultAMQPQueue           = "phoenix"
	DefaultAMQPQueueExpires    = time.Hour
	DefaultFailoverAfter       = 2 * time.Minute
	DefaultLocationWeight      = 1
	DefaultPromoteAfter        = time.Hour
)

// DefaultListen's port is one no common tool takes by default: 9090 is
// Prometheus's own, 9100–9999 its exporters', 9093 Alertmanager's.
const DefaultListen = "127.0.0.1:7355"

// The exchanges and topics OpenStack's services publish notifications on
// by default (oslo.messaging's control_exchange of each).
var (
	DefaultAMQPExchanges = []string{"glance", "nova"}
	DefaultAMQPTopics    = []string{"notifications", "versioned_notifications"}
)

// applyDefaults fills every field the file did not write. written tells
// written fields apart from zero ones, so "grace: 0s" stays zero and
// "healthy_threshold: 0" is refused rather than silently defaulted.
func applyDefaults(cfg *Config, written map[string]bool) {
	c := &cfg.Controller
	if !written["controller.interval"] {
		c.Interval = Duration(DefaultInterval)
	}
	if !written["controller.parallel_groups"] {
		c.ParallelGroups = DefaultParallelGroups
	}
	if !written["controller.listen"] {
		c.Listen = DefaultListen
	}
	if e := c.Coordination.Etcd; e != nil {
		if !written["controller.coordination.etcd.prefix"] {
			e.Prefix = DefaultEtcdPrefix
		}
		if !written["controller.coordination.etcd.lease_ttl"] {
			e.LeaseTTL = Duration(DefaultLeaseTTL)
		}
	}
	if a := c.Notifications.AMQP; a != nil {
		const at = "controller.notifications.amqp."
		if !written[at+"exchanges"] {
			a.Exchanges = slices.Clone(DefaultAMQPExchanges)
		}
		if !written[at+"topics"] {
			a.Topics = slices.Clone(DefaultAMQPTopics)
		}
		if !written[at+"queue"] {
			a.Queue = DefaultAMQPQueue
		}
		if !written[at+"queue_expires"] {
			a.QueueExpires = Duration(DefaultAMQPQueueExpires)
		}
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		unset := func(field string) bool { return !written[fmt.Sprintf("groups[%d].%s", i, field)] }
		r := &g.Rollout
		if !r.MaxSurge.Set {
			r.MaxSurge = IntOrPercent{Value: DefaultMaxSurge}
		}
		if !r.MaxUnavailable.Set {
			r.MaxUnavailable = IntOrPercent{Value: DefaultMaxUnavailable}
		}
		// MinReady's default, 0s, is the zero value.
		if unset("rollout.max_failures") {
			r.MaxFailures = DefaultMaxFailures
		}
		if unset("rollout.progress_deadline") {
			r.ProgressDeadline = Duration(DefaultProgressDeadline)
		}
		if unset("rollout.on_failure") {
			r.OnFailure = OnFailureHalt
		}
		if unset("rollout.watch") {
			r.Watch = Duration(DefaultWatch)
		}
		if unset("rollout.create_backoff_max") {
			r.CreateBackoffMax = Duration(DefaultCreateBackoffMax)
		}
		if p := r.Blockers.Prometheus; p != nil && unset("rollout.blockers.prometheus.timeout") {
			p.Timeout = Duration(DefaultBlockerTimeout)
		}
		h := &g.Health
		if unset("health.interval") {
			h.Interval = Duration(DefaultHealthInterval)
		}
		if unset("health.rise_interval") {
			h.RiseInterval = h.Interval / 5
		}
		if unset("health.timeout") {
			h.Timeout = Duration(min(DefaultHealthTimeout, h.Interval.D()))
		}
		if unset("health.healthy_threshold") {
			h.HealthyThreshold = DefaultHealthyThreshold
		}
		if unset("health.unhealthy_threshold") {
			h.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
		if unset("health.grace") {
			h.Grace = Duration(DefaultGrace)
		}
		if !h.MaxUnhealthy.Set {
			h.MaxUnhealthy = IntOrPercent{Value: DefaultMaxUnhealthyPercent, Percent: true}
		}
		if h.HTTP != nil && unset("health.http.path") {
			h.HTTP.Path = DefaultHTTPPath
		}
		// ExpectStatus's default, 0 (any 2xx), is the zero value.
		if unset("rollout.strategy") {
			g.Rollout.Strategy = StrategyReplace
		}
		if unset("backup.volumes") {
			g.Backup.Volumes = VolumesNone
		}
		if unset("backup.keep") {
			g.Backup.Keep = DefaultBackupKeep
		}
		if unset("backup.timeout") {
			g.Backup.Timeout = Duration(DefaultBackupTimeout)
		}
		if o := g.Traffic.Octavia; o != nil {
			if unset("traffic.octavia.weight") {
				o.Weight = DefaultMemberWeight
			}
			if unset("traffic.octavia.drain") {
				o.Drain = Duration(DefaultDrain)
			}
			if o.Network == "" && len(g.Networks) > 0 {
				o.Network = g.Networks[0]
			}
		}
		if f := g.Traffic.FloatingIP; f != nil {
			if unset("traffic.floating_ip.drain") {
				f.Drain = Duration(DefaultDrain)
			}
			if f.Network == "" && len(g.Networks) > 0 {
				f.Network = g.Networks[0]
			}
		}
		if p := g.Promote; p != nil && unset("promote.after") {
			p.After = Duration(DefaultPromoteAfter)
		}
		if p := g.Placement; p != nil {
			if unset("placement.failover_after") {
				p.FailoverAfter = Duration(DefaultFailoverAfter)
			}
			for j := range p.Locations {
				l := &p.Locations[j]
				at := fmt.Sprintf("placement.locations[%d].", j)
				if unset(at + "name") {
					l.Name = l.defaultName()
				}
				if unset(at + "weight") {
					l.Weight = DefaultLocationWeight
				}
				if len(l.AvailabilityZones) == 0 {
					l.AvailabilityZones = slices.Clone(g.AvailabilityZones)
				}
			}
		}
	}
}

// defaultName names a location after what it is written as: its region;
// its cloud when it has no region; both, "cloud/region", when both are
// written, since the same region name may be found in several clouds.
func (l Location) defaultName() string {
	switch {
	case l.Cloud != "" && l.Region != "":
		return l.Cloud + "/" + l.Region
	case l.Region != "":
		return l.Region
	}
	return l.Cloud
}
