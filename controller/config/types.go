package config

import (
	"time"
)

// Config is one Phoenix configuration file.
type Config struct {
	// Cloud names a clouds.yaml entry. Empty means OS_CLOUD, or the OS_*
	// variables when OS_CLOUD is unset too.
	Cloud      string     `yaml:"cloud"`
	Controller Controller `yaml:"controller"`
	Groups     []Group    `yaml:"groups"`

	// Path is the file the configuration was loaded from; relative paths
	// inside it (user_data_file) are resolved against its directory.
	Path string `yaml:"-"`
}

// Controller configures `phoenix daemon`; the one-shot commands ignore it.
type Controller struct {
	// Interval between two reconciles of a group at rest, and between two
	// resolutions of the image selectors (the image watch). A tenth of it
	// is added at random so that groups do not all call the cloud at the
	// same instant. Default 1m.
	Interval Duration `yaml:"interval"`
	// ParallelGroups bounds how many groups reconcile at the same time.
	// Default 4.
	ParallelGroups int `yaml:"parallel_groups"`
	// Listen is the address of the HTTP server the image pipeline and
	// operators reach: /healthz, /readyz, /v1/status, /v1/events, and
	// /metrics too unless MetricsListen is set. Default 127.0.0.1:7355.
	Listen string `yaml:"listen"`
	// MetricsListen, when set, moves /metrics (with a /healthz of its
	// own) to a listener of its own, so that Prometheus can reach it
	// without reaching events and status. Empty: /metrics stays on Listen.
	MetricsListen string `yaml:"metrics_listen"`
	// TLSCertFile and TLSKeyFile, both or neither, make both listeners
	// HTTPS. A reload reads them again.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// WebhookSecretFile holds the HMAC secret of POST /v1/events, at
	// least MinWebhookSecret bytes; the secret itself never appears in
	// this file. Without it, events are refused.
	WebhookSecretFile string `yaml:"webhook_secret_file"`
	// PreviousWebhookSecretFile holds the secret being rotated out: while
	// it is set, events signed with either secret are accepted.
	PreviousWebhookSecretFile string `yaml:"previous_webhook_secret_file"`
	// Notify lists where a JSON notice goes when a rollout starts,
	// completes or halts.
	Notify []NotifyTarget `yaml:"notify"`
	// Coordination lets several replicas of the daemon share the groups;
	// without it one daemon reconciles every group.
	Coordination Coordination `yaml:"coordination"`
	// Notifications, when set, has the daemon hear what Nova and Glance
	// publish, so it looks the moment the cloud says something changed
	// rather than at its next poll. Polling goes on beside it.
	Notifications Notifications `yaml:"notifications"`
}

// NotifyTarget is one receiver of notices: a URL written here, or a file
// holding it. A URL that carries a token (a chat webhook) belongs in a
// file, since this file is no place for credentials. A target may be
// written as the bare URL.
type NotifyTarget struct {
	URL string `yaml:"url,omitempty"`
	// URLFile holds the URL on one line; it is read at load time and on
	// every reload, and its content never appears in a message.
	URLFile string `yaml:"url_file,omitempty"`

	// fromFile is the content of URLFile; unread why it could not be
	// read at load time, for a one-shot command run by a user that may
	// not read it (the daemon refuses to start without it).
	fromFile string
	unread   error
}

// Unread says why URLFile could not be read at load time; nil when it
// was, or when the URL is written inline.
func (t NotifyTarget) Unread() error { return t.unread }

// Address is where notices go: URL, or the content of URLFile.
func (t NotifyTarget) Address() string {
	if t.URLFile != "" {
		return t.fromFile
	}
	return t.URL
}

// Redacted names the target in a message: its scheme and host only (see
// RedactURL), and the file it came from.
func (t NotifyTarget) Redacted() string {
	if t.URLFile != "" {
		return RedactURL(t.fromFile) + " (from " + t.URLFile + ")"
	}
	return RedactURL(t.URL)
}

// Notifications are the cloud's own messages the daemon listens to.
type Notifications struct {
	AMQP *AMQP `yaml:"amqp"`
}

// AMQP is the RabbitMQ that OpenStack's services publish notifications
// on (their transport_url), read through a queue of Phoenix's own.
type AMQP struct {
	// URLFile holds the broker's URL, amqp://user:password@host:5672/vhost
	// or amqps://…; the URL, with its password, never appears in this
	// file. Required.
	URLFile string `yaml:"url_file"`
	// CAFile checks an amqps broker's certificate (PEM); default the
	// system's roots.
	CAFile string `yaml:"ca_file"`
	// Exchanges are the services' control exchanges. Default glance, nova.
	Exchanges []string `yaml:"exchanges"`
	// Topics are the notification topics; Phoenix binds <topic>.info.
	// Default notifications, versioned_notifications.
	Topics []string `yaml:"topics"`
	// Queue is Phoenix's own queue, so it takes no message from another
	// consumer; a replica's ID is appended when several share the
	// groups. Default phoenix.
	Queue string `yaml:"queue"`
	// QueueExpires is how long the broker keeps the queue once nobody
	// reads it. Default 1h.
	QueueExpires Duration `yaml:"queue_expires"`

	// URL is the content of URLFile, read at load time.
	URL string `yaml:"-" json:"-"`
}

// Coordination says how replicas agree on who reconciles which group.
type Coordination struct {
	// Etcd, when set, makes this daemon one of several replicas: each
	// group is reconciled by the one replica holding its key in etcd.
	Etcd *Etcd `yaml:"etcd"`
}

// Etcd is the cluster that replicas coordinate through.
type Etcd struct {
	// Endpoints are the cluster's client URLs (http(s)://host:port, or
	// host:port). Required.
	Endpoints []string `yaml:"endpoints"`
	TLS       EtcdTLS  `yaml:"tls"`
	// Prefix is prepended to every key Phoenix writes; replicas that
	// share the groups share it. It starts and ends with a slash.
	// Default /phoenix/.
	Prefix string `yaml:"prefix"`
	// LeaseTTL is how long a replica that stopped answering keeps its
	// groups: others take them over within LeaseTTL plus one poll. Whole
	// seconds, at least 2s. Default 15s.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// EtcdTLS authenticates the connection to etcd: CAFile checks the
// server; CertFile and KeyFile, both or neither, are the client's.
type EtcdTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Group is one set of interchangeable servers that Phoenix keeps at Count,
// every one a fresh boot of the desired image and spec.
type Group struct {
	Name              string            `yaml:"name"`
	Count             int               `yaml:"count"`
	Image             ImageSelector     `yaml:"image"`
	Flavor            string            `yaml:"flavor"`
	Networks          []string          `yaml:"networks"`
	KeyName           string            `yaml:"key_name"`
	SecurityGroups    []string          `yaml:"security_groups"`
	ServerGroup       string            `yaml:"server_group"`
	AvailabilityZones []string          `yaml:"availability_zones"`
	UserDataFile      string            `yaml:"user_data_file"`
	Metadata          map[string]string `yaml:"metadata"`
	// MaxAge, when set, replaces servers older than this (each a little
	// earlier than the last, so that a fleet built on one day is not
	// rebuilt all at once). Default 0: no age limit.
	MaxAge  Duration `yaml:"max_age"`
	Rollout Rollout  `yaml:"rollout"`
	Health  Health   `yaml:"health"`
	Traffic Traffic  `yaml:"traffic"`
	Backup  Backup   `yaml:"backup"`
	// Hold is a hold kept in version control: while it is set no
	// voluntary replacement starts. Heals and compromised servers still
	// proceed: holding them back would keep a broken or breached server
	// serving.
	Hold bool `yaml:"hold"`
	// Stateful names the data volumes that move from each old server to
	// its replacement; nil for a group whose servers hold no data.
	Stateful *Stateful `yaml:"stateful"`
	// Placement spreads the group over several locations (regions or
	// clouds) and moves their share elsewhere when one goes down; nil
	// for a group that lives in the top-level cloud. It may be written
	// as the bare list of its locations.
	Placement *Placement `yaml:"placement"`
	// Promote makes the group a stage: the image it has run healthy long
	// enough gets a Glance tag, which a later stage's selector requires.
	// nil for a group that promotes nothing.
	Promote *Promote `yaml:"promote"`

	// UserData is the content of UserDataFile, read at load time so that a
	// file changed later cannot silently change the spec revision.
	UserData []byte `yaml:"-"`
}

// Promote is a stage's gate. Once the group has converged on an image and
// all its servers have served healthy for After (and the rollout's watch
// has ended), Phoenix adds Tag to the image in Glance, where any group
// whose selector requires Tag, and any tool, sees that the image passed.
// Glance is the record: the tag is added once and never by a guess.
type Promote struct {
	Tag   string   `yaml:"tag"`
	After Duration `yaml:"after"`
}

// Placement is where a group's servers live: its Count is shared among
// Locations by weight, and the share of a location that is down goes to
// the others until it is back. Moving between locations is not a new
// spec: the revision leaves placement out, as it leaves out zones.
type Placement struct {
	// FailoverAfter is how long a location's API or its server creates
	// must keep failing before it counts as down and its share moves to
	// the others. At least 10s, so that a passing hiccup does not move
	// servers back and forth. Default 2m.
	FailoverAfter Duration `yaml:"failover_after"`
	// Locations are where servers go; at least one. A single location is
	// a group moved to another region or cloud.
	Locations []Location `yaml:"locations"`
}

// Location is one region of one cloud. The group's other settings apply
// in each location, so what they name (flavor, networks, image, pool)
// must be found there by that name.
type Location struct {
	// Name goes into server metadata and metric labels: letters, digits
	// and - _ . /, at most 63 characters, unique in the group. Default:
	// the region; the cloud when there is no region; "cloud/region" when
	// both are written.
	Name string `yaml:"name"`
	// Cloud is a clouds.yaml entry. Default: the top-level cloud.
	Cloud string `yaml:"cloud,omitempty"`
	// Region is a region of Cloud. Default: the cloud's default region
	// (its region_name in clouds.yaml).
	// At least one of Cloud and Region is written. Both are left out when
	// empty in a file written back, where an empty one is refused.
	Region string `yaml:"region,omitempty"`
	// Weight is the location's share of Count against the others'; 0
	// makes it a standby that gets servers only when another location is
	// down. Default 1.
	Weight int `yaml:"weight"`
	// AvailabilityZones are zones of this location to spread its servers
	// across. Default: the group's availability_zones.
	AvailabilityZones []string `yaml:"availability_zones"`
}

// ImageSelector designates the baseline image: by ID, or by name and/or
// properties and tags. With Newest the most recently created active match
// wins; without it more than one match is an error.
type ImageSelector struct {
	ID         string            `yaml:"id"`
	Name       string            `yaml:"name"`
	Properties map[string]string `yaml:"properties"`
	Tags       []string          `yaml:"tags"`
	Newest     bool              `yaml:"newest"`
	// MaxAge raises an alert while the newest matching image is older
	// than this: the pipeline that bakes the gold image may have stopped.
	// Default 0: no alert.
	MaxAge Duration `yaml:"max_age"`
}

// Rollout bounds how a group moves from one revision to the next.
type Rollout struct {
	// MaxSurge is how many servers may exist above Count. A percentage of
	// Count rounds up. Default 1.
	MaxSurge IntOrPercent `yaml:"max_surge"`
	// MaxUnavailable is how many servers below Count may be unavailable
	// because of the rollout. A percentage of Count rounds down. Default 0.
	MaxUnavailable IntOrPercent `yaml:"max_unavailable"`
	// MinReady is how long a new server must have been healthy before it
	// counts as available. Default 0s.
	MinReady Duration `yaml:"min_ready"`
	// MaxFailures is the failure budget of a rollout: after this many new
	// servers went to ERROR or did not become ready within
	// ProgressDeadline, the rollout halts and keeps the old servers.
	// Default 3.
	MaxFailures int `yaml:"max_failures"`
	// Canary servers are replaced first; the rest follow once they have
	// served for CanaryBake — at once, or after `phoenix resume` when
	// PauseAfterCanary is set. Default 0: no canary.
	Canary           int      `yaml:"canary"`
	CanaryBake       Duration `yaml:"canary_bake"`
	PauseAfterCanary bool     `yaml:"pause_after_canary"`
	// Strategy is how a server gets the new image: replace (default: a
	// new server boots, the old one goes) or rebuild (Nova's rebuild
	// action reimages the server in place; it keeps its id, addresses,
	// ports and volumes).
	Strategy string `yaml:"strategy"`
	// CreateBackoffMax is the longest pause between creates while the
	// cloud refuses them (a full quota, another 4xx): the pause starts at
	// the reconciler's first one (10s, or this if shorter) and doubles up
	// to it, so the first create after a quota frees follows within it.
	// Above zero. Default 1m.
	CreateBackoffMax Duration `yaml:"create_backoff_max"`
	// ProgressDeadline is how long a new server may take from its create
	// to serving, and how long a rollout may go without a new server
	// serving, before it counts as failed or halts. Default 10m.
	ProgressDeadline Duration `yaml:"progress_deadline"`
	// OnFailure is what a failed rollout does: halt (default: keep what
	// serves, create nothing more) or rollback (reject the image and go
	// back to the one the group ran before, as carefully as any rollout).
	OnFailure string `yaml:"on_failure"`
	// Watch: a server of the new image that served and then fails its
	// check counts against MaxFailures while the rollout is under way, and
	// after it within Watch of first serving. Default 10m; 0 turns it off.
	Watch Duration `yaml:"watch"`
	// Windows, when given, are the only times a voluntary replacement
	// starts; heals and compromised servers do not wait for one. Each is
	// written "DAYS HH:MM-HH:MM [ZONE]" and read on the zone's wall clock.
	// Default: none, always open.
	Windows []Window `yaml:"windows"`
	// Blockers hold voluntary replacements back while something outside
	// Phoenix says the fleet is not fit for one (an incident, an alert).
	Blockers Blockers `yaml:"blockers"`
}

// Blockers are signals that keep voluntary replacements from starting.
type Blockers struct {
	Prometheus *PrometheusBlocker `yaml:"prometheus"`
}

// PrometheusBlocker blocks on a Prometheus query: while the query returns
// any series, no voluntary replacement starts; a query that cannot be
// answered blocks too, since an unknown state of the fleet is no reason
// to start replacing it.
type PrometheusBlocker struct {
	// URL is the Prometheus server's base URL (the query goes to its
	// /api/v1/query), http or https. Basic auth credentials written into
	// it are never echoed: use RedactedURL in messages.
	URL string `yaml:"url"`
	// Query is a PromQL instant query, such as ALERTS{severity="page",
	// alertstate="firing"}. Required.
	Query string `yaml:"query"`
	// Timeout bounds one query; a query that takes longer blocks. Above
	// zero. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

// Health says how a server is judged healthy.
type Health struct {
	HTTP *HTTPCheck `yaml:"http"`
	TCP  *TCPCheck  `yaml:"tcp"`
	// Interval between probes of one server. Default 5s.
	Interval Duration `yaml:"interval"`
	// RiseInterval between probes of a server that has not passed its
	// check yet (a new server booting): the rollout learns sooner that it
	// serves, for a few more probes per new server. Default interval/5.
	RiseInterval Duration `yaml:"rise_interval"`
	// Timeout of one probe. Default 2s.
	Timeout Duration `yaml:"timeout"`
	// HealthyThreshold consecutive passes make a server healthy. Default 3.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold consecutive failures make it unhealthy. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// Grace after a server becomes ACTIVE during which failures do not
	// count. Default 60s.
	Grace Duration `yaml:"grace"`
	// MaxUnhealthy bounds auto-heal: a server that served and then fails
	// its check is replaced (surge-first), unless two or more, and more
	// than this many, of the group are unhealthy at once — then the fault
	// is likely the network or the check itself, Phoenix replaces nothing
	// and raises an alert. One unhealthy server is always replaced. A
	// percentage of count rounds down. Default 40%.
	MaxUnhealthy IntOrPercent `yaml:"max_unhealthy"`
}

// Backup keeps the disk of a server before Phoenix deletes it.
type Backup struct {
	// SnapshotBeforeDelete snapshots (Nova createImage) every server that
	// served before it is deleted, and waits for the image to be active.
	SnapshotBeforeDelete bool `yaml:"snapshot_before_delete"`
	// Keep is how many of the group's snapshots are kept, newest first;
	// 0 keeps them all. Default 3.
	Keep int `yaml:"keep"`
	// MaxAge deletes the group's snapshots older than this (never the
	// newest). Default 0: no age limit.
	MaxAge Duration `yaml:"max_age"`
	// Timeout bounds the wait for a snapshot to become active; the server
	// is not deleted without it. Default 30m.
	Timeout Duration `yaml:"timeout"`
	// Volumes is snapshot to snapshot (Cinder) every data volume attached
	// to a server before it is deleted or its volume moves, or none
	// (default). Keep and MaxAge apply to each volume's snapshots.
	Volumes string `yaml:"volumes"`
	// Every, when set, also snapshots the data volumes on this schedule.
	Every Duration `yaml:"every"`
}

// Stateful says which attached volumes travel to the replacement.
type Stateful struct {
	Volumes VolumeSelector `yaml:"volumes"`
}

// VolumeSelector matches attached volumes by name (a shell pattern, as
// path.Match reads it) and/or metadata (every key must match).
type VolumeSelector struct {
	Name     string            `yaml:"name"`
	Metadata map[string]string `yaml:"metadata"`
}

// What a failed rollout does.
const (
	OnFailureHalt     = "halt"
	OnFailureRollback = "rollback"
)

// Rollout strategies.
const (
	StrategyReplace = "replace"
	StrategyRebuild = "rebuild"
)

// Volume backup modes.
const (
	VolumesNone     = "none"
	VolumesSnapshot = "snapshot"
)

// Traffic says how requests reach the group's servers, so that Phoenix
// moves them from an old server to its replacement itself: through an
// Octavia pool, or a floating IP for a group of one. Neither means the
// group serves what reaches it directly (a health check is then the only
// gate).
type Traffic struct {
	Octavia    *OctaviaTraffic    `yaml:"octavia"`
	FloatingIP *FloatingIPTraffic `yaml:"floating_ip"`
}

// OctaviaTraffic puts every serving server of the group into an Octavia
// pool as a member, and drains a server (weight 0) before it is deleted.
type OctaviaTraffic struct {
	// LoadBalancer, by name or ID, narrows the search for Pool when pool
	// names repeat across load balancers. Optional.
	LoadBalancer string `yaml:"load_balancer"`
	// Pool, by name or ID. Required.
	Pool string `yaml:"pool"`
	// ProtocolPort is the port members receive traffic on. Required.
	ProtocolPort int `yaml:"protocol_port"`
	// Network is the group network whose address becomes the member
	// address. Default: the group's first network.
	Network string `yaml:"network"`
	// Subnet, by name or ID, is sent as the member's subnet; needed when
	// the members are not on the load balancer's VIP subnet. Optional.
	Subnet string `yaml:"subnet"`
	// Weight of a serving member, 1 to 256. Default 1.
	Weight int `yaml:"weight"`
	// Drain is how long a member stays at weight 0 (finishing the
	// requests it has, taking no new ones) before it and its server go.
	// Default 30s.
	Drain Duration `yaml:"drain"`
}

// FloatingIPTraffic moves one floating IP to the group's new server once
// it is healthy (blue/green), for a group of one server.
type FloatingIPTraffic struct {
	// Address is an existing floating IP of the project.
	Address string `yaml:"address"`
	// Pool is an external network (name or ID) to allocate the address
	// from when the group has none yet; Phoenix finds it again by its
	// description. Address and Pool are alternatives.
	Pool string `yaml:"pool"`
	// Network is the group network whose port the address points to.
	// Default: the group's first network.
	Network string `yaml:"network"`
	// Drain is how long the old server lives on after the address left
	// it, finishing the requests it has. Default 30s.
	Drain Duration `yaml:"drain"`
}

// HTTPCheck probes GET http://<server address>:Port/Path.
type HTTPCheck struct {
	Port int    `yaml:"port"`
	Path string `yaml:"path"`
	// ExpectStatus is the status a healthy server answers. Default 0:
	// any 2xx.
	ExpectStatus int `yaml:"expect_status"`
}

// TCPCheck passes when a TCP connection to Port opens.
type TCPCheck struct {
	Port int `yaml:"port"`
}

// Duration is a time.Duration written the Go way in YAML ("30s", "5m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// IntOrPercent is a count written either as a whole number ("2") or as a
// percentage of the group's count ("25%").
type IntOrPercent struct {
	Value   int
	Percent bool
	// Set is true when the field was written in the file (so a default
	// applies only when it was not).
	Set bool
}

// Resolve turns the value into a server count for a group of count
// servers. Percentages round up when roundUp is true, down otherwise: the
// fencepost rule (surge rounds up, unavailable rounds down) that keeps a
// small group able to make progress without exceeding what was asked.
func (v IntOrPercent) Resolve(count int, roundUp bool) int {
	if !v.Percent {
		return v.Value
	}
	n := v.Value * count
	if roundUp {
		return (n + 99) / 100
	}
	return n / 100
}
