package plan

import (
	"strconv"
	"time"
)

// Server statuses and the task state the policy acts on, in Nova's words.
const (
	StatusBuild     = "BUILD"
	StatusActive    = "ACTIVE"
	StatusError     = "ERROR"
	StatusShutoff   = "SHUTOFF"
	StatusPaused    = "PAUSED"
	StatusSuspended = "SUSPENDED"
	StatusRebuild   = "REBUILD"
	TaskDeleting    = "deleting"
)

// Phases recorded on a server before a slow or destructive step:
// PhaseDraining before its traffic stops, PhaseDeleting before its delete,
// PhaseRebuilding before Nova reimages it in place (cleared once it serves
// again). DrainThenRebuild says a drain ends in a rebuild, not a delete.
const (
	PhaseDraining    = "draining"
	PhaseDeleting    = "deleting"
	PhaseRebuilding  = "rebuilding"
	DrainThenRebuild = "rebuild"
)

// Health is what a group's health check says of a server.
type Health int

const (
	HealthUnknown Health = iota
	Healthy
	Unhealthy
)

func (h Health) String() string {
	return [...]string{"unknown", "healthy", "unhealthy"}[h]
}

// Target is the desired state of one group, with every name already
// resolved and every percentage already rounded, and what is recorded on
// its servers about the rollout to it.
type Target struct {
	Count          int
	MaxSurge       int
	MaxUnavailable int
	MinReady       time.Duration
	ImageID        string
	Revision       string
	// RebuildBefore, when set, makes every server created before it drift:
	// a forced rebuild of a group that is otherwise up to date.
	RebuildBefore time.Time
	RebuildReason string
	// Zones are the availability zones to spread new servers across.
	Zones []string
	// ZoneFailures is when a create or a boot last failed in each zone
	// (the cloud refused a create there, a server there went to ERROR);
	// a failed server in ERROR listed now is a failure now. New servers
	// avoid a zone for ZoneAvoid after its last failure, unless every
	// zone failed lately (then the one that failed longest ago gets
	// them). An observation that only steers placement: a restart may
	// forget it. ZoneAvoid 0: no zone is avoided.
	ZoneFailures map[string]time.Time
	ZoneAvoid    time.Duration
	// Forces are rebuilds asked for by events (a security patch, a
	// compromised server): the servers they designate drift.
	Forces []Force
	// ProgressDeadline is how long a new server may take from its create
	// to ready, and a rollout may go without progress. 0: no deadline.
	ProgressDeadline time.Duration
	// MaxFailures new servers of the desired image and revision may fail
	// before the rollout halts.
	MaxFailures int
	// Canary servers are replaced first and must have served CanaryBake
	// before the rest follow; with PauseAfterCanary the rest wait until
	// Promoted (`phoenix resume`).
	Canary           int
	CanaryBake       time.Duration
	PauseAfterCanary bool
	Promoted         bool
	// PromotedAt is when `phoenix resume` promoted the canary (zero when
	// it did not, or when the record is older than the time).
	PromotedAt time.Time
	// MaxAge, when above zero, makes servers older than it drift; each
	// server's limit is brought forward by up to a fifth, by a hash of its
	// ID, to spread the replacements of servers built together.
	MaxAge time.Duration
	// MaxUnhealthy is how many servers may be unhealthy at once for
	// auto-heal to act; more, and nothing is replaced for health (the
	// fault is likely the network or the check). Negative: no heal.
	MaxUnhealthy int
	// HealAfter is how long a server must have been unhealthy before it
	// is healed: failures that begin together (a network fault) are then
	// counted together against MaxUnhealthy, not healed one by one.
	HealAfter time.Duration
	// Halted, when set, says why the rollout to this image and revision
	// halted (the record on the servers): nothing new is created, no old
	// server is touched, and new servers that do not serve are removed.
	Halted string
	// Progress is the failure record of the rollout to this image and
	// revision, read back from the servers.
	Progress Progress
	// WatchedSince is when this controller first saw the group with this
	// rollout to do: the stall deadline runs from the later of it and the
	// last progress recorded, as every deadline does from what this
	// controller watched — a restart never counts its own absence against
	// a rollout. Settle is how long it must have watched before it judges
	// at all: right after a start the health of every server is unknown
	// and nothing can move.
	WatchedSince time.Time
	Settle       time.Duration
	// QuotaWait, when set, is the cloud's refusal of the last create for
	// a full quota (no create has succeeded since): the rollout waits, it
	// does not stall. QuotaFreed is when such a wait last ended; the stall
	// deadline runs from it. Both are observations, like health: a
	// restart looks again.
	QuotaWait  string
	QuotaFreed time.Time
	// Sharing, when set, says the group's budgets are all held by its
	// other locations (a placed group): this location waits its turn, it
	// does not stall. SharingEnded is when such a wait last ended; the
	// stall deadline runs again from it. Observations too.
	Sharing      string
	SharingEnded time.Time
	// Unfenced is the first round after one whose cloud step fencing
	// refused (this replica could not prove it owns the group): like a
	// restart, the controller's absence never counts against a rollout,
	// so the stall deadline runs again from it. An observation too.
	Unfenced time.Time
	// Undeferred is when replacements kept back by steering (a hold, a
	// window, a blocker) last went on: the stall deadline runs again from
	// it, as from the end of a quota wait; a wait of hours is no stall.
	// An observation too: a restart looks again.
	Undeferred time.Time
	// HandoverEnded is when a data volume's handover last ended, moved or
	// rolled back: the volume may move again, and the stall deadline runs
	// again from it, as from the end of a quota wait. An observation too.
	HandoverEnded time.Time
	// Traffic is set when Phoenix moves the group's traffic itself (a
	// pool, a floating IP): a server then counts as available only once
	// it serves, and an ACTIVE server leaves through a drain of Drain.
	// SingleTraffic means one server at a time can hold the traffic (a
	// floating IP).
	Traffic       bool
	SingleTraffic bool
	Drain         time.Duration
	// Stateful is set when the group's data volumes move from each old
	// server to its replacement: a current server serves only once it
	// holds one, an old server that holds one goes only once a handover
	// moved it, and each handover in flight (InFlight) costs a unit of
	// MaxUnavailable, its old server being stopped.
	Stateful bool
	InFlight []InFlight
	// FreeVolumes are data volumes on no server and going nowhere: each
	// is placed on a new server that holds none.
	FreeVolumes []string
	// RebuildInPlace is set for rollout.strategy rebuild: an old server of
	// the desired revision is reimaged in place (Nova's rebuild) rather
	// than replaced; one of another revision is still replaced.
	RebuildInPlace bool
	// Watch: a server of the desired image that served and then fails its
	// check counts against the failure budget while the rollout is under
	// way, and after it within Watch of first serving — an image that
	// passes its gate and fails soon after is at fault, not the server.
	// The rollout's record is kept until Watch after its last server
	// became ready. 0: never.
	Watch time.Duration
	// Rollback is set for rollout.on_failure rollback: a failed rollout
	// rejects its image and the group goes back to the image it ran
	// before, rather than halting.
	Rollback bool
	// RollingBack is set when ImageID is itself the way back from
	// Rejected (recorded on the servers): its failure halts, it never
	// rolls back again.
	RollingBack bool
	Rejected    Ref
	// Before is what the group ran before ImageID and Revision, as the
	// reconciler last saw it on a server now gone: the previous image
	// when no server records or runs it (a group of one that deleted its
	// old server to make room). Zero: none seen.
	Before Ref
	// Promote is the group's stage gate (nil: none), ImageTags the
	// desired image's Glance tags, Promoted the group's record of the
	// last image it tagged, read back from its servers.
	Promote       *Promote
	ImageTags     []string
	PromotedImage PromotedImage
	// PromoteFailed is why the last tag of this image failed (Glance
	// refused it, or did not answer): the stage waits and tries again.
	PromoteFailed string
	// NoRollback, when set, says why the rollback the records ask for
	// cannot be done (the image to go back to is gone): the rollout to
	// ImageID halts with it at once.
	NoRollback string
	// Steering: while Held (who held the group, when, why) or Blocked
	// (what a blocker says) is set, or now is outside every one of
	// Windows, no voluntary replacement starts; heal, failed and
	// compromised servers, and urgent rebuilds go on.
	Held    string
	Blocked string
	Windows []Window
	// RebuildUrgent makes the RebuildBefore rebuild urgent: it does not
	// wait for a hold, a window or a blocker.
	RebuildUrgent bool
	// Only, when set, names the only servers this run replaces (`phoenix
	// rebuild --server`): every other server is left as it is, unless it
	// failed or is compromised.
	Only []string
}

// Ref names an image and a spec revision: what a server runs.
type Ref struct {
	ImageID, Revision string
}

// IsZero says whether r names nothing.
func (r Ref) IsZero() bool { return r.ImageID == "" }

func (r Ref) String() string { return r.ImageID + "@" + r.Revision }

// Force asks for the replacement of a group's servers created before
// Before, all of them or — when ImageID is set — those of that image and
// Revision: a security patch, or everything built like a compromised
// server.
type Force struct {
	Before            time.Time
	ImageID, Revision string
	// Servers, when set, names the servers asked for (`phoenix rebuild
	// --server`): only those are designated.
	Servers []string
	Reason  string
	// Urgent forces do not wait for a hold, a window or a blocker: a
	// compromise, a patch sent with "urgent": true.
	Urgent bool
}

// Progress is the part of a rollout's history that must outlive a restart
// and is not visible on the servers themselves: how many new servers of
// the image and revision failed (the last reason, and when), and which
// failed boots are counted already (until they are gone). A converged
// group has none.
type Progress struct {
	Failures    int
	LastFailure string
	At          time.Time
	Counted     []string
}

// IsZero says whether p records nothing.
func (p Progress) IsZero() bool {
	return p.Failures == 0 && p.LastFailure == "" && p.At.IsZero() && len(p.Counted) == 0
}

// TrafficState is where a server stands with the group's traffic.
type TrafficState int

const (
	// TrafficNone: no member in the pool, or the floating IP points
	// elsewhere.
	TrafficNone TrafficState = iota
	// TrafficPending: the member is being configured, or the pool's
	// monitor has not seen it healthy yet.
	TrafficPending
	// TrafficServing: the load balancer sends it new requests.
	TrafficServing
	// TrafficDrained: the member is at weight 0.
	TrafficDrained
	// TrafficBroken: the member is in ERROR.
	TrafficBroken
)

func (s TrafficState) String() string {
	return [...]string{"none", "pending", "serving", "drained", "broken"}[s]
}

// Server is one live server of the group as the plan sees it: the cloud's
// view, Phoenix's record on it, and the health checker's verdict.
type Server struct {
	ID        string
	Name      string
	Status    string
	TaskState string
	Zone      string
	ImageID   string
	Revision  string
	// Created is Phoenix's own creation time when it recorded one, Nova's
	// otherwise.
	Created time.Time
	Phase   string
	// Reason is the reason recorded with the phase.
	Reason string
	// RebuildMark is the reason an event recorded on the server for its
	// replacement, Compromised the reason it was found compromised.
	RebuildMark, Compromised string
	// RebuildUrgent is set when the rebuild recorded on it is urgent.
	RebuildUrgent bool
	// Protected, when set, says why the operator protected the server: it
	// is never replaced or removed unless it is compromised.
	Protected string
	// ReadyAt is when the server was recorded serving for the first time
	// (zero when it never was): such a server is never taken for a boot
	// that missed its deadline, and a canary's bake runs from it.
	ReadyAt time.Time
	Fault   string
	// Health is the health checker's verdict and HealthySince when it last
	// became healthy; HealthError says why the last probe failed.
	Health       Health
	HealthySince time.Time
	// UnhealthySince is when it became unhealthy (zero otherwise).
	UnhealthySince time.Time
	HealthError    string
	// WatchedSince is when this controller first listed the server (zero
	// when unknown). A server is failed on its progress deadline only
	// once it was watched that long: a daemon that starts after a
	// replacement's deadline passed (it was down) knows nothing of its
	// health yet and must look before it judges.
	WatchedSince time.Time
	// Traffic is where the server stands with the group's traffic, and
	// DrainStart when its drain was recorded (zero when none was).
	Traffic    TrafficState
	DrainStart time.Time
	// DrainThen is what follows its drain (DrainThenRebuild, or a delete).
	DrainThen string
	// Volumes are the volumes attached to it; StatefulVolumes those of
	// them that are the group's data volumes.
	Volumes, StatefulVolumes []string
	// Previous is the image and revision the server replaced, as
	// recorded at its create (zero when none was).
	Previous Ref
	// Unlisted marks a server this controller created moments ago that the
	// last list did not show: a real Nova paging with markers can miss a
	// server while it is being scheduled. It counts (so it is not created
	// twice over) but is never acted on.
	Unlisted bool
}

// Served says whether the server is recorded as having served once.
func (s Server) Served() bool { return !s.ReadyAt.IsZero() }

// Boot names one boot of a server, in a few characters: a server rebuilt
// in place boots again with a new created-at, and failing again is another
// failure.
func (s Server) Boot() string {
	id := s.ID
	if len(id) > 8 {
		id = id[:8]
	}
	return id + "." + strconv.FormatInt(s.Created.UnixNano(), 36)
}

// Kind sorts a server into the part it plays in a rollout.
type Kind int

const (
	// KindCurrent is a server of the desired image and revision.
	KindCurrent Kind = iota
	// KindOld has drifted and waits to be replaced.
	KindOld
	// KindFailed is in ERROR, missed its deadline, or is compromised: it
	// serves nothing and is removed freely.
	KindFailed
	// KindDeleting is on its way out (its delete was decided).
	KindDeleting
	// KindDraining takes no new requests and finishes the ones it has;
	// its delete follows the drain.
	KindDraining
	// KindKept would be replaced or removed but is kept as it is: it is
	// protected, or its replacement is deferred (Classified.Kept says
	// why). It counts toward capacity while it serves.
	KindKept
)

func (k Kind) String() string {
	return [...]string{"current", "old", "failed", "deleting", "draining", "kept"}[k]
}

// Classified is a server with the plan's verdict on it.
type Classified struct {
	Server
	Kind Kind
	// Reason says why an old server drifted or what failed.
	Reason string
	// Ready is true for an ACTIVE server that has been healthy for
	// MinReady. Available is Ready and, when Phoenix moves the traffic,
	// serving it: it counts towards the group's capacity.
	Ready     bool
	Available bool
	// Sick is set on a current server that served and has failed its
	// check for HealAfter (whether heal may replace it or not); Healed
	// when heal made it old.
	Sick, Healed bool
	// Kept says why a KindKept server is kept as it is.
	Kept string
}

// Create asks for one new server.
type Create struct {
	Zone string
}

// Delete asks for one server to go.
type Delete struct {
	Server Classified
	Reason string
	// Resume is set when the delete was decided before (the phase is on
	// the server) but the cloud shows no delete in progress: a crash or a
	// lost request came between the two.
	Resume bool
}

// Handover asks for a data volume to move from an old server to a new one
// (stateful groups); From is empty for a free volume.
type Handover struct {
	Volume   string
	From, To Classified
}

// InFlight is a handover recorded on its volume and not finished: it
// costs a unit of unavailability until it is.
type InFlight struct {
	Volume, From, To, Step string
}

// Reimage asks for a server to be reimaged in place with the desired image
// (strategy rebuild): the phase is recorded on it first, then Nova's
// rebuild is requested.
type Reimage struct {
	Server Classified
	Reason string
	// Resume is set when the rebuild was recorded before but Nova shows
	// the old image still: the request is sent again.
	Resume bool
}

// Drain asks for a server to stop taking new requests: its drain start is
// recorded on it, then its member goes to weight 0.
type Drain struct {
	Server Classified
	Reason string
	// Resume is set when the drain was recorded before but the member
	// still takes requests: only the weight is set again, and the drain
	// keeps its recorded start.
	Resume bool
	// Until is when the drain ends and the server may go.
	Until time.Time
	// Then is DrainThenRebuild when the server is rebuilt in place after
	// its drain rather than deleted.
	Then string
}

// Decision is what one reconcile of one group does next, and what it must
// record for the rounds after it.
type Decision struct {
	Servers []Classified
	Creates []Create
	Deletes []Delete
	// AddTraffic lists ready servers to put into the traffic (a pool
	// member, the floating IP); Drains the servers to take out of it.
	AddTraffic []Classified
	Drains     []Drain
	Reimages   []Reimage
	// Handovers are the data volumes to move now, each from an old server
	// to a new one that holds none.
	Handovers []Handover
	// Halt, when set, says why this round halts the rollout: it is
	// recorded on the servers before anything else is done.
	Halt string
	// Reject, when set, says why this round rejects the rollout to the
	// desired image and revision and rolls the group back to RollbackTo:
	// it is recorded on the servers before anything else, and the next
	// round goes to RollbackTo. The round itself is planned as halted.
	Reject     string
	RollbackTo Ref
	// Previous is what the servers created this round replace, recorded
	// on each: what the group last ran before the desired image.
	Previous Ref
	// Progress is the rollout's failure record after this round; when
	// RecordProgress is set it changed and is written on the servers
	// before the failed servers it counts are deleted.
	Progress       Progress
	RecordProgress bool
	Status         Status
	RequeueAfter   time.Duration
}

// Status counts a group's servers by the part they play.
type Status struct {
	Desired   int  `json:"desired"`
	Current   int  `json:"current"`
	Available int  `json:"available"`
	Booting   int  `json:"booting"`
	Old       int  `json:"old"`
	Failed    int  `json:"failed"`
	Deleting  int  `json:"deleting"`
	Draining  int  `json:"draining,omitempty"`
	Halted    bool `json:"halted,omitempty"`
	// RollingBack is set while the group goes back from a rejected image.
	RollingBack bool `json:"rolling_back,omitempty"`
	// Unhealthy counts settled servers failing their check (or stopped);
	// HealBlocked is set when they are more than MaxUnhealthy, so none is
	// replaced.
	Unhealthy   int  `json:"unhealthy,omitempty"`
	HealBlocked bool `json:"heal_blocked,omitempty"`
	// Canary is set while the canaries are replaced and bake; Paused
	// while the rest wait for `phoenix resume`.
	Canary bool `json:"canary,omitempty"`
	Paused bool `json:"paused,omitempty"`
	// Handovers counts data volumes on their way to a replacement.
	Handovers int `json:"handovers,omitempty"`
	// Waiting says why the rollout waits on the cloud rather than
	// stalls: "quota — <the cloud's message>".
	Waiting string `json:"waiting,omitempty"`
	// Failures counts the new servers of the desired image and revision
	// that failed, against MaxFailures.
	Failures int `json:"failures,omitempty"`
	// Avoiding lists the zones new servers avoid, comma-separated, since
	// creates or boots failed there lately; AvoidingSince is the latest
	// of those failures. AvoidingText says it for people.
	Avoiding      string    `json:"avoiding,omitempty"`
	AvoidingSince time.Time `json:"avoiding_since,omitzero"`
	// Steering says why no voluntary replacement starts now (held,
	// blocked, outside the windows); NextWindow when the next window
	// opens, while outside them. Deferred counts the servers whose
	// replacement waits for it, Protected the protected servers left as
	// they are.
	Steering   string    `json:"steering,omitempty"`
	NextWindow time.Time `json:"next_window,omitzero"`
	Deferred   int       `json:"deferred,omitempty"`
	Protected  int       `json:"protected,omitempty"`
	Total      int       `json:"total"`
	Converged  bool      `json:"converged"`
	// Promotion is the group's stage gate; nil for a group that promotes
	// nothing.
	Promotion *Promotion `json:"promotion,omitempty"`
}
