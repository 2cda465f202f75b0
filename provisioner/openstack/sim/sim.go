package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Options configure a simulator. Zero values take the documented defaults.
type Options struct {
	// Addr is the API listen address. Default "127.0.0.1:0".
	Addr   string
	Region string // default "RegionOne"
	// Credentials of the one user and project. Defaults "demo",
	// "demo-secret", "demo", "Default".
	Username, Password, ProjectName, DomainName string
	// TokenTTL is how long a token lives; an expired token gets 401 so the
	// client re-authenticates. Default 1h.
	TokenTTL time.Duration
	// MaxMicroversion is Nova's maximum microversion. Default "2.96".
	MaxMicroversion string
	// NovaMaxLimit is Nova's osapi_max_limit. Default 1000.
	NovaMaxLimit int
	// BootTime is create → ACTIVE. Default Fixed(100ms).
	BootTime Dist
	// HealthDelay is ACTIVE → the server's application answers health
	// checks. Default Fixed(50ms).
	HealthDelay Dist
	// DeleteTime is delete accepted → server gone. Default Fixed(10ms).
	DeleteTime Dist
	// SnapshotTime is createImage → the snapshot image is active.
	// Default Fixed(100ms).
	SnapshotTime Dist
	// HealthPorts are the ports every server's application listens on.
	// Default [8080].
	HealthPorts []int
	// Seed seeds the simulator's random numbers.
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
	if len(o.HealthPorts) == 0 {
		o.HealthPorts = []int{8080}
	}
}

// Sim is a running simulator. All methods are safe for concurrent use.
type Sim struct {
	opts      Options
	listener  net.Listener
	srv       *http.Server
	endpoint  string
	projectID string
	userID    string
	closing   chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup

	mu        sync.Mutex
	rng       *rand.Rand
	closed    bool
	tokens    map[string]time.Time
	servers   map[string]*server
	order     []*server // by creation, oldest first
	images    map[string]*image
	flavors   []Flavor
	networks  []Network
	keypairs  map[string]bool
	secGroups map[string]bool
	srvGroups []serverGroup
	quota     Quota
	failBoots int
	stickBoot int
	faults    []*fault
	requests  []*Request
	timers    map[*time.Timer]bool
}

// New starts a simulator; it serves until Close.
func New(opts Options) (*Sim, error) {
	opts.defaults()
	if _, _, err := parseMicroversion(opts.MaxMicroversion); err != nil {
		return nil, fmt.Errorf("MaxMicroversion: %w", err)
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	s := &Sim{
		opts:      opts,
		listener:  l,
		endpoint:  "http://" + l.Addr().String(),
		projectID: strings.ReplaceAll(uuid.NewString(), "-", ""),
		userID:    strings.ReplaceAll(uuid.NewString(), "-", ""),
		closing:   make(chan struct{}),
		rng:       rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed)),
		tokens:    map[string]time.Time{},
		servers:   map[string]*server{},
		images:    map[string]*image{},
		keypairs:  map[string]bool{},
		secGroups: map[string]bool{"default": true},
		quota:     Quota{Instances: -1},
		timers:    map[*time.Timer]bool{},
	}
	s.flavors = []Flavor{
		{ID: "1", Name: "m1.tiny", VCPUs: 1, RAM: 512, Disk: 1},
		{ID: "2", Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20},
		{ID: "3", Name: "m1.medium", VCPUs: 2, RAM: 4096, Disk: 40},
		{ID: "4", Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 80},
	}
	s.networks = []Network{{ID: uuid.NewString(), Name: "private"}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

// Close stops the API, every server's health listeners and every timer.
func (s *Sim) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.mu.Lock()
		s.closed = true
		for t := range s.timers {
			t.Stop()
		}
		s.timers = nil
		var apps []*server
		for _, srv := range s.servers {
			apps = append(apps, srv)
		}
		s.mu.Unlock()
		for _, srv := range apps {
			srv.stopApp()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
		_ = s.srv.Close()
		s.bg.Wait()
	})
}

// Endpoint is the base URL every API is served under.
func (s *Sim) Endpoint() string { return s.endpoint }

// AuthURL is the Keystone v3 URL for clients.
func (s *Sim) AuthURL() string { return s.endpoint + "/identity/v3" }

// CloudsYAML is a clouds.yaml holding one entry named cloud for this
// simulator.
func (s *Sim) CloudsYAML(cloud string) []byte {
	o := s.opts
	return fmt.Appendf(nil, `clouds:
  %s:
    auth:
      auth_url: %s
      username: %q
      password: %q
      project_name: %q
      user_domain_name: %q
      project_domain_name: %q
    region_name: %s
    interface: public
    identity_api_version: 3
`, cloud, s.AuthURL(), o.Username, o.Password, o.ProjectName, o.DomainName, o.DomainName, o.Region)
}

// WriteCloudsYAML writes CloudsYAML to path with mode 0600.
func (s *Sim) WriteCloudsYAML(path, cloud string) error {
	if err := os.WriteFile(path, s.CloudsYAML(cloud), 0o600); err != nil {
		return fmt.Errorf("write clouds.yaml: %w", err)
	}
	return nil
}

// after runs f after d unless the simulator closes first. Call with s.mu
// held.
func (s *Sim) after(d time.Duration, f func()) {
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		delete(s.timers, t)
		s.mu.Unlock()
		f()
	})
	s.timers[t] = true
}

// draw samples a distribution under the lock (the rng is not safe for
// concurrent use).
func (s *Sim) draw(d Dist) time.Duration {
	return max(0, d(s.rng))
}

// ExpireTokens ends every issued token, as a real token's lifetime would,
// so tests see clients re-authenticate without waiting.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	for t := range s.tokens {
		s.tokens[t] = time.Time{}
	}
	s.mu.Unlock()
}

// Quota limits the project. Instances < 0 means unlimited (the default).
type Quota struct {
	Instances int
}

// SetQuota sets the project's quota.
func (s *Sim) SetQuota(q Quota) {
	s.mu.Lock()
	s.quota = q
	s.mu.Unlock()
}

// FailNextBoots makes the next n servers created go to ERROR after their
// boot time.
func (s *Sim) FailNextBoots(n int) {
	s.mu.Lock()
	s.failBoots += n
	s.mu.Unlock()
}

// StickNextBoots makes the next n servers created stay in BUILD for ever.
func (s *Sim) StickNextBoots(n int) {
	s.mu.Lock()
	s.stickBoot += n
	s.mu.Unlock()
}

// Flavor is a Nova flavor.
type Flavor struct {
	ID, Name         string
	VCPUs, RAM, Disk int
}

// AddFlavor adds a flavor; an empty ID gets a new UUID.
func (s *Sim) AddFlavor(f Flavor) Flavor {
	if f.ID == "" {
		f.ID = uuid.NewString()
	}
	s.mu.Lock()
	s.flavors = append(s.flavors, f)
	s.mu.Unlock()
	return f
}

// Network is a Neutron network.
type Network struct {
	ID, Name string
}

// AddNetwork adds a network; an empty ID gets a new UUID.
func (s *Sim) AddNetwork(n Network) Network {
	if n.ID == "" {
		n.ID = uuid.NewString()
	}
	s.mu.Lock()
	s.networks = append(s.networks, n)
	s.mu.Unlock()
	return n
}

// AddKeypair adds a key pair name servers may be created with.
func (s *Sim) AddKeypair(name string) {
	s.mu.Lock()
	s.keypairs[name] = true
	s.mu.Unlock()
}

// AddSecurityGroup adds a security group name servers may use.
func (s *Sim) AddSecurityGroup(name string) {
	s.mu.Lock()
	s.secGroups[name] = true
	s.mu.Unlock()
}

type serverGroup struct {
	ID, Name, Policy string
}

// AddServerGroup adds a server group and returns its ID.
func (s *Sim) AddServerGroup(name, policy string) string {
	g := serverGroup{ID: uuid.NewString(), Name: name, Policy: policy}
	s.mu.Lock()
	s.srvGroups = append(s.srvGroups, g)
	s.mu.Unlock()
	return g.ID
}

// Request is one API request the simulator received.
type Request struct {
	// Time is when it arrived.
	Time                time.Time
	Service             string // identity, compute, image, network
	Method, Path, Query string
	// Status is what the client got; 0 for a request never answered.
	Status       int
	Microversion string
	Faulted      bool
}

// Requests returns every API request received, in arrival order.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
	}
	return out
}

// ResetRequests forgets the request log.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// discardWriter swallows the real answer of a request whose fault says
// to act and then answer otherwise.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

var services = []struct{ prefix, name string }{
	{"/identity", "identity"},
	{"/compute/v2.1", "compute"},
	{"/compute", "compute"},
	{"/image", "image"},
	{"/networking", "network"},
}

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	service, sub := "", r.URL.Path
	for _, sv := range services {
		if rest, ok := strings.CutPrefix(r.URL.Path, sv.prefix); ok && (rest == "" || rest[0] == '/') {
			service, sub = sv.name, rest
			break
		}
	}
	rec := &Request{Time: time.Now(), Service: service, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Microversion: requestedMicroversion(r)}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	f := s.matchFault(service, r.Method, sub)
	rec.Faulted = f != nil
	s.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		s.mu.Lock()
		rec.Status = sw.status
		s.mu.Unlock()
	}()

	if f != nil {
		switch f.Action {
		case FailWith:
			s.writeFault(sw, service, f)
			return
		case Hang:
			s.hang(r)
			return
		case CommitThenFail, CommitThenHang:
			s.route(&discardWriter{header: http.Header{}}, r, service, sub)
			if f.Action == CommitThenHang {
				s.hang(r)
				return
			}
			s.writeFault(sw, service, f)
			return
		}
	}
	s.route(sw, r, service, sub)
}

func (s *Sim) hang(r *http.Request) {
	// Reading the whole body lets the HTTP server notice when the client
	// gives up and hangs up.
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-s.closing:
	}
}

func (s *Sim) route(w http.ResponseWriter, r *http.Request, service, sub string) {
	switch service {
	case "identity":
		s.serveIdentity(w, r, sub)
		return
	case "":
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "message": "no such service: " + r.URL.Path}})
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Keystone uri=%q", s.endpoint+"/identity"))
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
		return
	}
	switch service {
	case "compute":
		s.serveCompute(w, r, sub)
	case "image":
		s.serveImage(w, r, sub)
	case "network":
		s.serveNetwork(w, r, sub)
	}
}

func (s *Sim) authorized(r *http.Request) bool {
	token := r.Header.Get("X-Auth-Token")
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && time.Now().Before(exp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed request body: %w", err)
	}
	return nil
}

// snapshot of servers sorted by creation; used by Servers and Monitor.
func (s *Sim) snapshot() []Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Server, 0, len(s.order))
	for _, srv := range s.order {
		out = append(out, srv.view())
	}
	return out
}

// Servers returns every server that exists, those being deleted included,
// oldest first.
func (s *Sim) Servers() []Server { return s.snapshot() }

// Server returns one server.
func (s *Sim) Server(id string) (Server, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.servers[id]
	if !ok {
		return Server{}, false
	}
	return srv.view(), true
}

var errBadRequest = errors.New("bad request")
