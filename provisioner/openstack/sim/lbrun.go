package sim

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// --- forwarding ----------------------------------------------------------------

// serving says whether a member may be sent new requests: up, with a
// weight, created (ACTIVE or being updated), and ONLINE when its pool has
// a health monitor. Call with s.mu held.
func (m *member) serving() bool {
	if m.gone || !m.adminUp || m.weight <= 0 {
		return false
	}
	if m.prov != stActive && m.prov != stPendingUpdate {
		return false
	}
	return m.pool.monitor == nil || m.oper == opOnline
}

// pick chooses the member a listener sends its next request to: smooth
// weighted round robin over the serving members, backups only when no
// other member serves. "" when none serves. Call with s.mu held.
func (s *Sim) pick(l *lbListener) string {
	if s.lbaas.listeners[l.id] != l || !l.adminUp || l.defaultPool == nil {
		return ""
	}
	var primary, backup []*member
	for _, m := range l.defaultPool.members {
		if !m.serving() {
			continue
		}
		if m.backup {
			backup = append(backup, m)
		} else {
			primary = append(primary, m)
		}
	}
	cands := primary
	if len(cands) == 0 {
		cands = backup
	}
	if len(cands) == 0 {
		return ""
	}
	total := 0
	var best *member
	for _, m := range cands {
		m.current += m.weight
		total += m.weight
		if best == nil || m.current > best.current {
			best = m
		}
	}
	best.current -= total
	return net.JoinHostPort(best.address, strconv.Itoa(best.port))
}

// listenerHandler forwards each request a listener's socket receives to
// one member of its default pool, or answers 503 as HAProxy does when no
// member serves.
func (s *Sim) listenerHandler(l *lbListener) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		target := s.pick(l)
		s.mu.Unlock()
		if target == "" {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n")
			return
		}
		s.forward(w, r, target)
	})
}

// ListenerURL is where a listener forwards HTTP, "http://127.0.0.1:PORT";
// "" for a listener that does not exist.
func (s *Sim) ListenerURL(listenerID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.lbaas.listeners[listenerID]; ok {
		return l.url
	}
	return ""
}

// --- health monitors -------------------------------------------------------------

// startMonitor starts probing a pool's members for a health monitor,
// every Options.MonitorInterval, until the monitor is deleted or the
// simulator closes. Call with s.mu held.
func (s *Sim) startMonitor(hm *healthMonitor) {
	if s.closed {
		return
	}
	hm.stop = make(chan struct{})
	s.bg.Add(1)
	go s.runMonitor(hm, hm.stop)
}

type probeJob struct {
	m      *member
	target string
}

// probe outcomes.
const (
	probeUp      = iota
	probeFailing // it answered, but not as the monitor expects
	probeNothing // nothing answered
)

func (s *Sim) runMonitor(hm *healthMonitor, stop chan struct{}) {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.MonitorInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.closing:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.lbaas.monitors[hm.id] != hm {
			s.mu.Unlock()
			return
		}
		typ, method, path, codes := hm.typ, hm.httpMethod, hm.urlPath, hm.expectedCodes
		timeout := min(time.Duration(hm.timeout)*time.Second, time.Second)
		if timeout <= 0 {
			timeout = time.Second
		}
		var jobs []probeJob
		for _, m := range hm.pool.members {
			if !m.adminUp || m.prov == stPendingDelete {
				continue
			}
			addr, port := m.address, m.port
			if m.monitorAddress != "" {
				addr = m.monitorAddress
			}
			if m.monitorPort != 0 {
				port = m.monitorPort
			}
			jobs = append(jobs, probeJob{m, net.JoinHostPort(addr, strconv.Itoa(port))})
		}
		s.mu.Unlock()

		results := make([]int, len(jobs))
		var wg sync.WaitGroup
		for i, j := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = s.probe(typ, method, path, codes, j.target, timeout)
			}()
		}
		wg.Wait()

		s.mu.Lock()
		if s.lbaas.monitors[hm.id] == hm {
			for i, j := range jobs {
				if !j.m.gone && j.m.pool.monitor == hm && j.m.adminUp {
					j.m.record(results[i], hm)
				}
			}
		}
		s.mu.Unlock()
	}
}

// record applies one probe's outcome: max_retries successes in a row make
// a member ONLINE; max_retries_down failures in a row make it OFFLINE
// when its application answered wrongly, ERROR when nothing answered.
// Call with s.mu held.
func (m *member) record(outcome int, hm *healthMonitor) {
	if outcome == probeUp {
		m.fall = 0
		m.rise++
		if m.rise >= max(hm.maxRetries, 1) {
			m.oper = opOnline
		}
		return
	}
	m.rise = 0
	m.fall++
	if m.fall >= max(hm.maxRetriesDown, 1) {
		m.oper = opOffline
		if outcome == probeNothing {
			m.oper = opError
		}
	}
}

// probe checks one member once: an HTTP request for HTTP(S) monitors, a
// TCP connection for the others (PING and TLS-HELLO included).
func (s *Sim) probe(typ, method, path, codes, target string, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if !httpMonitor(typ) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
		if err != nil {
			return probeNothing
		}
		_ = c.Close()
		return probeUp
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+target+path, nil)
	if err != nil {
		return probeNothing
	}
	req.Header.Set("User-Agent", "sim-octavia-health-monitor")
	client := &http.Client{Transport: s.probeTransport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Do(req)
	if err != nil {
		return probeNothing
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	if ok, _ := parseCodes(codes); ok != nil && ok(resp.StatusCode) {
		return probeUp
	}
	return probeFailing
}

// parseCodes reads expected_codes: "200", "200,202" or "200-204".
func parseCodes(v string) (func(int) bool, bool) {
	v = strings.TrimSpace(v)
	if lo, hi, ok := strings.Cut(v, "-"); ok {
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || len(lo) != 3 || len(hi) != 3 || a > b {
			return nil, false
		}
		return func(c int) bool { return c >= a && c <= b }, true
	}
	var set []int
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		c, err := strconv.Atoi(p)
		if err != nil || len(p) != 3 {
			return nil, false
		}
		set = append(set, c)
	}
	return func(c int) bool { return slices.Contains(set, c) }, true
}

// --- for tests ------------------------------------------------------------------------

// LoadBalancerSpec describes a load balancer AddLoadBalancer makes.
type LoadBalancerSpec struct {
	Name string
	// ListenerPort is the listener's protocol_port, shown in the JSON
	// only: traffic goes to LoadBalancerInfo.URL. Default 80.
	ListenerPort int
	// PoolName names the listener's default pool (ROUND_ROBIN, HTTP).
	PoolName string
	// Monitor adds an HTTP health monitor on MonitorPath (default "/"),
	// max_retries 1 and max_retries_down 2.
	Monitor     bool
	MonitorPath string
}

// LoadBalancerInfo names what AddLoadBalancer made; URL is where its
// listener forwards.
type LoadBalancerInfo struct {
	ID, ListenerID, PoolID, URL string
}

// AddLoadBalancer makes a load balancer on "private-subnet", ACTIVE at
// once, with one HTTP listener whose default pool is a new pool, and a
// health monitor if asked, as an operator would have set up beforehand.
func (s *Sim) AddLoadBalancer(spec LoadBalancerSpec) (LoadBalancerInfo, error) {
	if spec.ListenerPort == 0 {
		spec.ListenerPort = 80
	}
	if spec.MonitorPath == "" {
		spec.MonitorPath = "/"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.subnetByName("private-subnet")
	if !ok {
		return LoadBalancerInfo{}, fmt.Errorf("sim: no subnet private-subnet")
	}
	name := spec.Name
	lb := s.newLB(lbBody{commonBody: commonBody{Name: &name}}, sn)
	settle(&lb.lbObj)
	pname, algo := spec.PoolName, "ROUND_ROBIN"
	p := s.newPool(lb, poolBody{commonBody: commonBody{Name: &pname}, Protocol: "HTTP", LBAlgorithm: &algo})
	settle(&p.lbObj)
	port := spec.ListenerPort
	l, err := s.newListener(lb, listenerBody{Protocol: "HTTP", ProtocolPort: &port}, p)
	if err != nil {
		delete(s.lbaas.pools, p.id)
		delete(s.lbaas.lbs, lb.id)
		return LoadBalancerInfo{}, err
	}
	settle(&l.lbObj)
	if spec.Monitor {
		delay, timeout, up, down := 1, 1, 1, 2
		hm := s.newMonitor(p, monitorBody{Type: "HTTP", Delay: &delay, Timeout: &timeout, MaxRetries: &up,
			MaxRetriesDown: &down, URLPath: &spec.MonitorPath})
		settle(&hm.lbObj)
	}
	return LoadBalancerInfo{ID: lb.id, ListenerID: l.id, PoolID: p.id, URL: l.url}, nil
}

// Member is a pool member as tests see it.
type Member struct {
	ID, Name, Address                   string
	ProtocolPort, Weight                int
	AdminStateUp                        bool
	ProvisioningStatus, OperatingStatus string
	Tags                                []string
}

func (m *member) view() Member {
	return Member{ID: m.id, Name: m.name, Address: m.address, ProtocolPort: m.port, Weight: m.weight,
		AdminStateUp: m.adminUp, ProvisioningStatus: m.prov, OperatingStatus: m.oper, Tags: slices.Clone(m.tags)}
}

// Members returns a pool's members in creation order; nil for a pool that
// does not exist.
func (s *Sim) Members(poolID string) []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lbaas.pools[poolID]
	if !ok {
		return nil
	}
	out := make([]Member, len(p.members))
	for i, m := range p.members {
		out[i] = m.view()
	}
	return out
}

// AddMember adds a member to a pool directly, ACTIVE at once, whatever
// the load balancer's status: a member someone else made. It takes Name,
// Address, ProtocolPort, Weight (0 means Octavia's default 1) and Tags;
// the member is always admin up.
func (s *Sim) AddMember(poolID string, m Member) (Member, error) {
	if net.ParseIP(m.Address) == nil || m.ProtocolPort < 1 || m.ProtocolPort > 65535 || m.Weight < 0 || m.Weight > 256 {
		return Member{}, fmt.Errorf("sim: bad member %s:%d weight %d", m.Address, m.ProtocolPort, m.Weight)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lbaas.pools[poolID]
	if !ok {
		return Member{}, fmt.Errorf("sim: no pool %s", poolID)
	}
	for _, x := range p.members {
		if x.address == m.Address && x.port == m.ProtocolPort {
			return Member{}, fmt.Errorf("sim: %s", duplicateMember(m.Address, m.ProtocolPort))
		}
	}
	port := m.ProtocolPort
	b := memberBody{Name: &m.Name, Address: m.Address, ProtocolPort: &port}
	if m.Weight > 0 {
		b.Weight = &m.Weight
	}
	if m.Tags != nil {
		b.Tags = &m.Tags
	}
	nm := s.newMember(p, b)
	nm.prov = stActive
	return nm.view(), nil
}

// FailNextMembers makes the next n members created through the API (one
// by one or in a batch update) end in provisioning status ERROR instead
// of ACTIVE; their load balancer returns to ACTIVE as usual.
func (s *Sim) FailNextMembers(n int) {
	s.mu.Lock()
	s.failMembers += n
	s.mu.Unlock()
}

// PoolExtremes is what a PoolMonitor saw: the fewest and the most members
// serving (eligible for new requests) at once, and how many samples.
type PoolExtremes struct {
	MinServing, MaxServing, Samples int
}

// PoolMonitor samples how many members of a pool serve.
type PoolMonitor struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
	mu       sync.Mutex
	seen     PoolExtremes
}

// MonitorPool starts sampling a pool every interval, until Stop or Close.
func (s *Sim) MonitorPool(poolID string, every time.Duration) *PoolMonitor {
	m := &PoolMonitor{stop: make(chan struct{})}
	m.sample(s, poolID)
	s.sampleEvery(every, m.stop, &m.done, func() { m.sample(s, poolID) })
	return m
}

func (m *PoolMonitor) sample(s *Sim, poolID string) {
	n := 0
	s.mu.Lock()
	if p, ok := s.lbaas.pools[poolID]; ok {
		for _, x := range p.members {
			if x.serving() {
				n++
			}
		}
	}
	s.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen.Samples == 0 {
		m.seen.MinServing = n
	}
	m.seen.Samples++
	m.seen.MinServing = min(m.seen.MinServing, n)
	m.seen.MaxServing = max(m.seen.MaxServing, n)
}

// Seen returns the extremes seen so far; sampling goes on.
func (m *PoolMonitor) Seen() PoolExtremes {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen
}

// Stop ends sampling and returns the extremes seen.
func (m *PoolMonitor) Stop() PoolExtremes {
	m.stopOnce.Do(func() { close(m.stop) })
	m.done.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen
}
