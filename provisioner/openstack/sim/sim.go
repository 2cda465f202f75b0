package sim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Options configure a simulator. Zero values take the documented defaults.
type Options struct {
	// Addr is the API listen address. Default "127.0.0.1:0".
	Addr string
	// Region is the catalog's region. Default "RegionOne".
	Region string
	// Regions are further regions besides Region: each a complete,
	// separate cloud (servers, images, networks, load balancers,
	// volumes, quota, faults) on a listener of its own, seeded as Region
	// is. This simulator's Keystone is the only one: its catalog lists
	// every region and its tokens are valid in all. Region(name) reaches
	// each; Close closes them all.
	Regions []string
	// Credentials of the one user and project. Defaults "demo",
	// "demo-secret", "demo", "Default" (the domain of both).
	Username, Password, ProjectName, DomainName string
	// TokenTTL is how long a token lives; an expired token gets 401 so the
	// client re-authenticates. Default 1h.
	TokenTTL time.Duration
	// MaxMicroversion is Nova's maximum microversion. Default "2.96".
	MaxMicroversion string
	// NovaMaxLimit is Nova's osapi_max_limit: the default and the largest
	// page of a server list. Default 1000.
	NovaMaxLimit int
	// BootTime is create → ACTIVE. Default Fixed(100ms).
	BootTime Dist
	// HealthDelay is ACTIVE → the server's application answers health
	// checks. Default Fixed(50ms).
	HealthDelay Dist
	// DeleteTime is delete accepted → server gone. Default Fixed(10ms).
	DeleteTime Dist
	// SnapshotTime is a server's createImage action → the snapshot image
	// is active and the server's task state clear. Default Fixed(100ms).
	SnapshotTime Dist
	// HealthPorts are the ports every server's application listens on;
	// New fails when one of them is in use on every loopback address.
	// Default: one port, PreferredHealthPort when it is free, else one
	// the kernel finds free (Sim.HealthPorts says which), so that another
	// program on the machine never stops the simulator.
	HealthPorts []int
	// PreferredHealthPort is the port the default HealthPorts tries
	// first. Default 8080.
	PreferredHealthPort int
	// LBUpdateTime is how long an Octavia change keeps its load balancer
	// in PENDING_CREATE, PENDING_UPDATE or PENDING_DELETE (when every
	// other change under it is refused with 409). Default Fixed(20ms).
	LBUpdateTime Dist
	// VolumeTime is how long a Cinder volume stays creating (→ available)
	// or deleting (→ gone). Default Fixed(20ms).
	VolumeTime Dist
	// AttachTime is how long a volume stays attaching (→ in-use) or
	// detaching (→ available). Default Fixed(20ms).
	AttachTime Dist
	// VolumeSnapshotTime is how long a volume snapshot stays creating
	// (→ available) or deleting (→ gone). Default Fixed(20ms).
	VolumeSnapshotTime Dist
	// PowerTime is how long os-stop and os-start keep a server in task
	// state powering-off or powering-on. Default Fixed(20ms).
	PowerTime Dist
	// RebuildTime is how long a rebuild keeps a server in REBUILD.
	// Default Fixed(50ms).
	RebuildTime Dist
	// NoVolumeService leaves Cinder out of the catalog: a cloud without
	// block storage.
	NoVolumeService bool
	// NoLoadBalancerService leaves Octavia out of the catalog.
	NoLoadBalancerService bool
	// MonitorInterval is how often Octavia's health monitors probe each
	// member, whatever their delay says. Default 50ms.
	MonitorInterval time.Duration
	// Seed seeds the simulator's random numbers (the distributions and
	// fault fractions).
	Seed int64
}

func (o *Options) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Addr, "127.0.0.1:0")
	def(&o.Region, "RegionOne")
	def(&o.Username, "demo")
	def(&o.Password, "demo-secret")
	def(&o.ProjectName, "demo")
	def(&o.DomainName, "Default")
	def(&o.MaxMicroversion, "2.96")
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.NovaMaxLimit <= 0 {
		o.NovaMaxLimit = 1000
	}
	if o.BootTime == nil {
		o.BootTime = Fixed(100 * time.Millisecond)
	}
	if o.HealthDelay == nil {
		o.HealthDelay = Fixed(50 * time.Millisecond)
	}
	if o.DeleteTime == nil {
		o.DeleteTime = Fixed(10 * time.Millisecond)
	}
	if o.SnapshotTime == nil {
		o.SnapshotTime = Fixed(100 * time.Millisecond)
	}
	if o.LBUpdateTime == nil {
		o.LBUpdateTime = Fixed(20 * time.Millisecond)
	}
	for _, d := range []*Dist{&o.VolumeTime, &o.AttachTime, &o.VolumeSnapshotTime, &o.PowerTime} {
		if *d == nil {
			*d = Fixed(20 * time.Millisecond)
		}
	}
	if o.RebuildTime == nil {
		o.RebuildTime = Fixed(50 * time.Millisecond)
	}
	if o.MonitorInterval <= 0 {
		o.MonitorInterval = 50 * time.Millisecond
	}
	if o.PreferredHealthPort == 0 {
		o.PreferredHealthPort = 8080
	}
	o.HealthPorts = append([]int(nil), o.HealthPorts...)
}

// Sim is a running simulator. All its methods are safe for concurrent use.
type Sim struct {
	opts      Options
	maxMV     microversion
	api       apiServer // the API listener, closed while down
	endpoint  string
	projectID string
	userID    string
	domainID  string
	closing   chan struct{} // closed when Close begins
	// primary is the simulator whose Keystone this region trusts; nil
	// on the primary itself, which holds the other regions.
	primary *Sim
	regions []*Sim
	// inflight counts API requests being handled (see InFlight).
	inflight atomic.Int64
	// ctx ends when Close begins: probes and proxied requests use it.
	ctx    context.Context
	cancel context.CancelFunc
	// proxyTransport carries the requests of load balancer listeners and
	// floating IPs to their servers; probeTransport the health monitors'
	// probes.
	proxyTransport, probeTransport *http.Transport
	closeOnce                      sync.Once
	// bg counts everything Close waits for: the API's accept loop and
	// connections, timer callbacks in progress and monitors.
	bg sync.WaitGroup

	mu      sync.Mutex
	rng     *rand.Rand
	closed  bool
	tokens  map[string]*token
	servers map[string]*server
	// order holds the live servers by creation (seq ascending), which is
	// also Created ascending: lists walk it backwards from a marker found
	// by binary search.
	order []*server
	// gone remembers the seq of deleted servers: Nova still accepts a
	// deleted server as a list marker.
	gone        map[string]uint64
	seq         uint64
	lastCreated time.Time
	images      map[string]*image
	imageSeq    int
	flavors     []Flavor
	networks    []Network
	subnets     []subnet
	ports       map[string]*server // by port ID
	fips        []*floatingIP
	lbaas       lbaasState
	failMembers int
	keypairs    map[string]bool
	secGroups   map[string]bool
	srvGroups   []serverGroup
	quota       Quota
	failBoots   int
	stickBoots  int
	failZones   map[string]int // zones whose boots all fail: the boots failed so far
	faults      []*fault
	cinder      cinderState
	lastVolume  time.Time
	requests    []*Request
	timers      map[*time.Timer]struct{}
	appCreds    map[string]ApplicationCredential // by ID
}

// New starts a simulator: it listens and serves at once, until Close.
// With Options.Regions it starts one per region, all behind its Keystone.
func New(opts Options) (*Sim, error) {
	opts.defaults()
	if err := checkRegions(opts.Region, opts.Regions); err != nil {
		return nil, err
	}
	s, err := newSim(opts, nil)
	if err != nil {
		return nil, err
	}
	if err := s.startRegions(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newSim starts the simulator of one region; primary, when not nil, is
// the one whose Keystone (user, project, tokens) it shares.
func newSim(opts Options, primary *Sim) (*Sim, error) {
	maxMV, err := parseMicroversion(opts.MaxMicroversion)
	if err != nil || !maxMV.atLeast(1) {
		return nil, fmt.Errorf("sim: MaxMicroversion %q: want 2.N with N ≥ 1", opts.MaxMicroversion)
	}
	if opts.HealthPorts, err = pickHealthPorts(opts.HealthPorts, opts.PreferredHealthPort); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("sim: listen on %s: %w", opts.Addr, err)
	}
	s := &Sim{
		opts:      opts,
		maxMV:     maxMV,
		endpoint:  "http://" + l.Addr().String(),
		primary:   primary,
		projectID: hexID(),
		userID:    hexID(),
		domainID:  domainID(opts.DomainName),
		closing:   make(chan struct{}),
		rng:       rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed5eed)),
		tokens:    map[string]*token{},
		servers:   map[string]*server{},
		gone:      map[string]uint64{},
		images:    map[string]*image{},
		keypairs:  map[string]bool{},
		secGroups: map[string]bool{"default": true},
		quota:     Quota{Instances: -1},
		timers:    map[*time.Timer]struct{}{},
		flavors: []Flavor{
			{ID: "1", Name: "m1.tiny", VCPUs: 1, RAM: 512, Disk: 1},
			{ID: "2", Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20},
			{ID: "3", Name: "m1.medium", VCPUs: 2, RAM: 4096, Disk: 40},
			{ID: "4", Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 80},
		},
		ports:          map[string]*server{},
		proxyTransport: newTransport(),
		probeTransport: newTransport(),
	}
	if primary != nil {
		s.projectID, s.userID, s.domainID = primary.projectID, primary.userID, primary.domainID
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.lbaas.init()
	s.cinder.init()
	s.AddNetwork(Network{Name: "private"})
	s.AddNetwork(Network{Name: "public", External: true})
	s.api.mu.Lock()
	s.api.addr = l.Addr().String()
	s.serveAPI(l)
	s.api.mu.Unlock()
	return s, nil
}

// trackConns counts an http.Server's connections in wg, so that closing
// the server can wait for their goroutines to end.
func trackConns(wg *sync.WaitGroup) func(net.Conn, http.ConnState) {
	return func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			wg.Add(1)
		case http.StateClosed, http.StateHijacked:
			wg.Done()
		}
	}
}

// Close stops the API, every server's health listeners, every timer and
// every goroutine the simulator started, and returns when they are gone;
// the primary closes every region. Requests held by a Hang fault end
// unanswered. Close may be called more than once.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		for _, r := range s.regions {
			r.Close()
		}
		close(s.closing)
		s.cancel()
		s.mu.Lock()
		s.closed = true
		proxies := s.allProxies()
		for t := range s.timers {
			t.Stop()
		}
		s.timers = nil
		apps := make([]*server, 0, len(s.servers))
		for _, srv := range s.order {
			apps = append(apps, srv)
		}
		s.mu.Unlock()
		for _, p := range proxies {
			p.stop()
		}
		for _, srv := range apps {
			srv.stopApp()
		}
		s.stopAPI()
		s.bg.Wait()
		s.proxyTransport.CloseIdleConnections()
		s.probeTransport.CloseIdleConnections()
	})
}

// Endpoint is the base URL every API is served under,
// "http://127.0.0.1:PORT".
func (s *Sim) Endpoint() string { return s.endpoint }

// HealthPorts are the ports every server's application listens on, on
// the server's address; configurations used against the simulator take
// their health check and pool member ports from here.
func (s *Sim) HealthPorts() []int { return append([]int(nil), s.opts.HealthPorts...) }

// HealthPort is the first of HealthPorts.
func (s *Sim) HealthPort() int { return s.opts.HealthPorts[0] }

// AuthURL is the Keystone v3 URL clients authenticate at: the primary's
// in every region.
func (s *Sim) AuthURL() string { return s.keystone().endpoint + "/identity/v3" }

// CloudsYAML is a clouds.yaml holding one entry named cloud for this
// simulator: for a region, the primary's Keystone and the region's name.
func (s *Sim) CloudsYAML(cloud string) []byte {
	o := s.opts
	return fmt.Appendf(nil, `clouds:
  %q:
    auth:
      auth_url: %q
      username: %q
      password: %q
      project_name: %q
      user_domain_name: %q
      project_domain_name: %q
    region_name: %q
    interface: public
    identity_api_version: 3
`, cloud, s.AuthURL(), o.Username, o.Password, o.ProjectName, o.DomainName, o.DomainName, o.Region)
}

// WriteCloudsYAML writes CloudsYAML(cloud) to path with mode 0600.
func (s *Sim) WriteCloudsYAML(path, cloud string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("sim: write clouds.yaml: %w", err)
	}
	_, err = f.Write(s.CloudsYAML(cloud))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, 0o600) // an existing file keeps its mode on open
	}
	if err != nil {
		return fmt.Errorf("sim: write clouds.yaml: %w", err)
	}
	return nil
}

// after runs f, without s.mu, once d has passed, unless the simulator
// closes first. Call it with s.mu held.
func (s *Sim) after(d time.Duration, f func()) {
	if s.closed {
		return
	}
	var t *time.Timer
	// The callback takes s.mu before reading t, and t is assigned while
	// the caller still holds s.mu, so the callback always sees it.
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		delete(s.timers, t)
		s.bg.Add(1)
		s.mu.Unlock()
		defer s.bg.Done()
		f()
	})
	s.timers[t] = struct{}{}
}

// draw samples a distribution. Call it with s.mu held: the generator is
// not safe for concurrent use.
func (s *Sim) draw(d Dist) time.Duration {
	return max(0, d(s.rng))
}

// ExpireTokens ends every token issued so far, as their lifetime running
// out would, so tests see clients re-authenticate without waiting. Tokens
// are the primary's: called on any region, it ends them in every region.
func (s *Sim) ExpireTokens() {
	k := s.keystone()
	k.mu.Lock()
	for _, t := range k.tokens {
		t.expires = time.Time{}
	}
	k.mu.Unlock()
}

// Quota limits the project. Instances < 0 means unlimited (the default).
type Quota struct {
	Instances int
}

// SetQuota sets the project's quota. Servers that exist stay; creates that
// would exceed it are refused with Nova's 403.
func (s *Sim) SetQuota(q Quota) {
	s.mu.Lock()
	s.quota = q
	s.mu.Unlock()
}

// FailNextBoots makes the next n servers created go to ERROR after their
// boot time, with Nova's "No valid host" fault.
func (s *Sim) FailNextBoots(n int) {
	s.mu.Lock()
	s.failBoots += n
	s.mu.Unlock()
}

// StickNextBoots makes the next n servers created stay in BUILD for ever.
func (s *Sim) StickNextBoots(n int) {
	s.mu.Lock()
	s.stickBoots += n
	s.mu.Unlock()
}

// hexID is a Keystone-style ID: a UUID's 32 hex digits.
func hexID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

// domainID is Keystone's ID for the domain: "default" for the default
// domain, a stable hex ID for any other.
func domainID(name string) string {
	if name == "Default" {
		return "default"
	}
	sum := sha1.Sum([]byte("domain:" + name))
	return hex.EncodeToString(sum[:16])
}

// ClearBootFaults cancels what FailNextBoots and StickNextBoots have not
// used yet, and every FailBootsInZone: the cloud is healthy again.
func (s *Sim) ClearBootFaults() {
	s.mu.Lock()
	s.failBoots, s.stickBoots, s.failZones = 0, 0, nil
	s.mu.Unlock()
}
