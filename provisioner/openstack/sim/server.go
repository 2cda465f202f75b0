package sim

import (
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// Health is what a server's application answers to health checks.
type Health int

const (
	// HealthUp answers HTTP 200 "ok".
	HealthUp Health = iota
	// HealthFailing answers HTTP 503 (connections are still accepted).
	HealthFailing
	// HealthDown closes the listeners: connections are refused.
	HealthDown
)

func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthFailing:
		return "failing"
	case HealthDown:
		return "down"
	}
	return "unknown"
}

// Server is a simulated server as tests see it: a copy, safe to keep.
type Server struct {
	ID, Name, Status, TaskState, ImageID, FlavorID, AvailabilityZone, KeyName string

	Tags     []string
	Metadata map[string]string
	// Address is the server's one fixed IPv4 address (127.x.y.z), set at
	// create; Nova shows it once the server has left BUILD.
	Address string
	// Network is the name of the network it is on.
	Network string
	// Created is when the create was accepted; ActiveAt is zero until the
	// server is ACTIVE.
	Created, ActiveAt time.Time
	// BootTime and HealthDelay are the durations drawn for this server.
	BootTime, HealthDelay time.Duration
	// Healthy: ACTIVE, its application up (HealthDelay passed and its
	// listeners open), health HealthUp, and not being deleted.
	Healthy bool
	// Deleting: a delete was accepted and the server is not gone yet.
	Deleting bool
	// Volumes are the IDs of the volumes attached (or being attached) to
	// it, as os-extended-volumes:volumes_attached shows them.
	Volumes []string
	// CreatedBy is the User-Agent of the request that created it: which
	// Phoenix replica did, when several share the groups.
	CreatedBy string
}

// server is the simulator's record of a server. Fields are guarded by
// Sim.mu except app, which appMu guards. metadata and tags are never
// changed in place, only replaced, so a reference taken under the lock
// stays valid to read after it.
type server struct {
	id, name           string
	seq                uint64
	status             string
	vmState, taskState string
	powerState         int
	imageID, flavorID  string
	network            Network // zero for networks "none"
	address, mac       string
	portID             string // its Neutron port; "" without a network
	az                 string
	pinnedAZ           string // the zone asked for at create, if any
	keyName            string
	secGroups          []string
	metadata           map[string]string
	tags               []string
	description        *string
	hostname           string
	userData           string
	group              string
	createdBy          string // the create's User-Agent
	created, updated   time.Time
	launchedAt         time.Time
	activeAt           time.Time
	fault              string
	faultAt            time.Time
	bootTime           time.Duration
	healthDelay        time.Duration
	health             Health
	leaking            bool // its image's application fails now (Image.FailsAfter), whatever health says
	deleting           bool
	appUp              bool // HealthDelay has passed since ACTIVE
	listening          bool // the health listeners are open
	ports              []int
	volumes            []string // attached volume IDs; replaced, never changed in place
	gen                uint64   // bumped by every power action and rebuild

	appMu sync.Mutex
	app   *app
}

// view is the server as tests see it, sharing its tags and metadata with
// the record (they are replaced, never changed, so that is safe to read
// after the lock); detach copies them. Call with Sim.mu held.
func (srv *server) view() Server {
	return Server{
		ID: srv.id, Name: srv.name, Status: srv.status, TaskState: srv.taskState,
		ImageID: srv.imageID, FlavorID: srv.flavorID, AvailabilityZone: srv.az, KeyName: srv.keyName,
		Tags: srv.tags, Metadata: srv.metadata,
		Address: srv.address, Network: srv.network.Name,
		Created: srv.created, ActiveAt: srv.activeAt,
		BootTime: srv.bootTime, HealthDelay: srv.healthDelay,
		Healthy:   srv.status == "ACTIVE" && srv.appUp && srv.listening && srv.health == HealthUp && !srv.leaking && !srv.deleting,
		Deleting:  srv.deleting,
		Volumes:   srv.volumes,
		CreatedBy: srv.createdBy,
	}
}

// detach gives a view its own tags and metadata.
func (v *Server) detach() {
	v.Tags = slices.Clone(v.Tags)
	v.Volumes = slices.Clone(v.Volumes)
	v.Metadata = maps.Clone(v.Metadata)
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
}

// Servers returns every server that exists, those being deleted included,
// sorted by Created then ID (creation order: no two servers share a
// Created time). The result is a copy. It holds the simulator's lock only
// to copy references, so sampling it often does not slow the API.
func (s *Sim) Servers() []Server {
	s.mu.Lock()
	out := make([]Server, len(s.order))
	for i, srv := range s.order {
		out[i] = srv.view()
	}
	s.mu.Unlock()
	for i := range out {
		out[i].detach()
	}
	return out
}

// Server returns one server, false when it does not exist (never did, or
// is gone).
func (s *Sim) Server(id string) (Server, bool) {
	s.mu.Lock()
	srv, ok := s.servers[id]
	var v Server
	if ok {
		v = srv.view()
	}
	s.mu.Unlock()
	if !ok {
		return Server{}, false
	}
	v.detach()
	return v, true
}

// nextCreated is now, made strictly later than every earlier server's
// creation so that Created orders servers exactly as creation did. Call
// with s.mu held.
func (s *Sim) nextCreated() time.Time {
	now := time.Now().UTC()
	if !now.After(s.lastCreated) {
		now = s.lastCreated.Add(time.Nanosecond)
	}
	s.lastCreated = now
	return now
}

// index is the position in s.order of the first server with a seq of at
// least seq. Call with s.mu held.
func (s *Sim) index(seq uint64) int {
	return sort.Search(len(s.order), func(i int) bool { return s.order[i].seq >= seq })
}

// finishBoot ends a server's boot: ACTIVE (and its application starting
// HealthDelay later) or ERROR. Call with s.mu held.
func (s *Sim) finishBoot(srv *server, fail bool) {
	if s.servers[srv.id] != srv || srv.deleting {
		return
	}
	now := time.Now().UTC()
	srv.updated = now
	if fail {
		srv.status, srv.vmState, srv.taskState, srv.powerState = "ERROR", "error", "", 0
		srv.fault, srv.faultAt = "No valid host was found. There are not enough hosts available.", now
		return
	}
	srv.status, srv.vmState, srv.taskState, srv.powerState = "ACTIVE", "active", "", 1
	srv.launchedAt, srv.activeAt = now, now
	s.appAfter(srv, srv.gen)
}

// removeServer ends a deleted server: gone from every list, its listeners
// closed.
func (s *Sim) removeServer(srv *server) {
	s.mu.Lock()
	if s.servers[srv.id] != srv {
		s.mu.Unlock()
		return
	}
	delete(s.servers, srv.id)
	if i := s.index(srv.seq); i < len(s.order) && s.order[i] == srv {
		s.order = slices.Delete(s.order, i, i+1)
	}
	s.gone[srv.id] = srv.seq
	s.serverGone(srv)
	if srv.portID != "" {
		delete(s.ports, srv.portID)
		s.portGone(srv.portID)
	}
	s.mu.Unlock()
	srv.stopApp()
}
