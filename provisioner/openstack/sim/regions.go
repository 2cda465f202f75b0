package sim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// A region is a whole simulated cloud but for Keystone: Nova, Glance,
// Neutron, Octavia and Cinder with their own state, faults and listener.
// The primary simulator (the one New returns) owns the others and its
// Keystone serves them all, as one Keystone serves every region of a real
// cloud, so groups spanning regions are tested with one authentication
// and a region can fail alone.

// checkRegions refuses region names that are empty or given twice.
func checkRegions(primary string, extra []string) error {
	seen := map[string]bool{primary: true}
	for _, name := range extra {
		switch {
		case name == "":
			return errors.New("sim: Regions: a region needs a name")
		case seen[name]:
			return fmt.Errorf("sim: Regions: region %q given twice", name)
		}
		seen[name] = true
	}
	return nil
}

// startRegions starts a simulator for each of Options.Regions, seeded as
// the primary and sharing its user, project and health ports, on a
// listener of its own on the primary's host.
func (s *Sim) startRegions() error {
	host, _, err := net.SplitHostPort(s.opts.Addr)
	if err != nil {
		return fmt.Errorf("sim: listen address %q: %w", s.opts.Addr, err)
	}
	for i, name := range s.opts.Regions {
		o := s.opts
		o.Region, o.Regions = name, nil
		o.Addr = net.JoinHostPort(host, "0")
		o.Seed = s.opts.Seed + int64(i) + 1 // draws of its own: regions do not boot in lockstep
		r, err := newSim(o, s)
		if err != nil {
			return fmt.Errorf("sim: start region %s: %w", name, err)
		}
		s.regions = append(s.regions, r)
	}
	return nil
}

// keystone is the simulator whose Keystone issues and checks tokens.
func (s *Sim) keystone() *Sim {
	if s.primary != nil {
		return s.primary
	}
	return s
}

// Region returns the simulator of the region named, the primary itself
// for its own, or nil when there is no such region. Faults, quota, images,
// SetDown and the server list of the region it returns are that region's
// alone.
func (s *Sim) Region(name string) *Sim {
	k := s.keystone()
	if name == k.opts.Region {
		return k
	}
	for _, r := range k.regions {
		if r.opts.Region == name {
			return r
		}
	}
	return nil
}

// Regions names every region, the primary's first, then Options.Regions
// in order.
func (s *Sim) Regions() []string {
	k := s.keystone()
	out := []string{k.opts.Region}
	for _, r := range k.regions {
		out = append(out, r.opts.Region)
	}
	return out
}

// RegionName is the region this simulator serves.
func (s *Sim) RegionName() string { return s.opts.Region }

// apiServer is a region's API listener, closed while the region is down.
type apiServer struct {
	mu     sync.Mutex
	addr   string       // host:port, kept so the catalog holds across SetDown
	srv    *http.Server // nil while down
	closed bool
}

// serveAPI serves the API on l. Call with s.api.mu held.
func (s *Sim) serveAPI(l net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ConnState:         trackConns(&s.bg),
	}
	s.api.srv = srv
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = srv.Serve(l)
	}()
}

// stopAPI closes the listener and every connection for good.
func (s *Sim) stopAPI() {
	s.api.mu.Lock()
	defer s.api.mu.Unlock()
	s.api.closed = true
	if s.api.srv != nil {
		_ = s.api.srv.Close()
		s.api.srv = nil
	}
}

// SetDown takes the region's API off the network (true) or brings it
// back (false), as when a region's control plane is partitioned from the
// controller. While down its listener is closed: connections are refused
// and those open are cut, requests in progress included. Everything
// behind the API runs on: servers boot and delete, their applications
// answer health checks, load balancers and floating IPs forward, and the
// region's state is kept. Back up, it listens again at the same Endpoint;
// that fails only when another program took the port meanwhile. Taking
// the primary down takes Keystone with it: tokens already issued stay
// valid in the other regions, but nobody can authenticate.
func (s *Sim) SetDown(down bool) error {
	s.api.mu.Lock()
	defer s.api.mu.Unlock()
	switch {
	case s.api.closed:
		return fmt.Errorf("sim: set region %s down=%t: the simulator is closed", s.opts.Region, down)
	case down && s.api.srv != nil:
		_ = s.api.srv.Close()
		s.api.srv = nil
	case !down && s.api.srv == nil:
		l, err := net.Listen("tcp", s.api.addr)
		if err != nil {
			return fmt.Errorf("sim: bring region %s back on %s: %w", s.opts.Region, s.api.addr, err)
		}
		s.serveAPI(l)
	}
	return nil
}

// Down says whether the region's API is down (SetDown).
func (s *Sim) Down() bool {
	s.api.mu.Lock()
	defer s.api.mu.Unlock()
	return s.api.srv == nil && !s.api.closed
}
