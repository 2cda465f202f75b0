package sim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// octaviaTime is the format of Octavia's created_at and updated_at: no
// zone, whole seconds.
const octaviaTime = "2006-01-02T15:04:05"

// Octavia's statuses.
const (
	stActive        = "ACTIVE"
	stError         = "ERROR"
	stPendingCreate = "PENDING_CREATE"
	stPendingUpdate = "PENDING_UPDATE"
	stPendingDelete = "PENDING_DELETE"
	opOnline        = "ONLINE"
	opOffline       = "OFFLINE"
	opDegraded      = "DEGRADED"
	opError         = "ERROR"
	opNoMonitor     = "NO_MONITOR"
)

// lbaasState is everything Octavia holds. Guarded by Sim.mu.
type lbaasState struct {
	lbs       map[string]*loadBalancer
	listeners map[string]*lbListener
	pools     map[string]*lbPool
	monitors  map[string]*healthMonitor
	seq       uint64
}

func (st *lbaasState) init() {
	st.lbs = map[string]*loadBalancer{}
	st.listeners = map[string]*lbListener{}
	st.pools = map[string]*lbPool{}
	st.monitors = map[string]*healthMonitor{}
}

// lbObj is what every Octavia object has.
type lbObj struct {
	id, name, description string
	prov, oper            string
	adminUp               bool
	tags                  []string
	created, updated      time.Time // updated zero: null
	seq                   uint64
}

func (o *lbObj) touch() { o.updated = time.Now().UTC() }

type loadBalancer struct {
	lbObj
	subnetID, networkID, vipAddress, vipPortID string
	gone                                       bool
}

type lbListener struct {
	lbObj
	lb          *loadBalancer
	protocol    string
	port        int
	connLimit   int
	defaultPool *lbPool
	proxy       *proxy
	url         string
}

type lbPool struct {
	lbObj
	lb                  *loadBalancer
	protocol, algorithm string
	monitor             *healthMonitor
	members             []*member
}

type member struct {
	lbObj
	pool           *lbPool
	address        string
	port           int
	weight         int
	subnetID       string
	backup         bool
	monitorAddress string
	monitorPort    int // 0: none
	rise, fall     int // consecutive probe successes and failures
	current        int // smooth weighted round robin
	gone           bool
}

type healthMonitor struct {
	lbObj
	pool                                       *lbPool
	typ                                        string
	delay, timeout, maxRetries, maxRetriesDown int
	httpMethod, urlPath, expectedCodes         string
	stop                                       chan struct{}
}

func (s *Sim) newObj(name string, tags []string) lbObj {
	s.lbaas.seq++
	if tags == nil {
		tags = []string{}
	}
	return lbObj{id: uuid.NewString(), name: name, prov: stPendingCreate, oper: opOffline, adminUp: true,
		tags: tags, created: time.Now().UTC(), seq: s.lbaas.seq}
}

// octaviaError answers in Octavia's (WSME's) error shape.
func octaviaError(w http.ResponseWriter, status int, msg string) {
	code := "Client"
	if status >= 500 {
		code = "Server"
	}
	writeJSON(w, status, map[string]any{"faultcode": code, "faultstring": msg, "debuginfo": nil})
}

func immutableMsg(lb *loadBalancer) string {
	return "Load Balancer " + lb.id + " is immutable and cannot be updated."
}

func pending(status string) bool { return strings.HasPrefix(status, "PENDING_") }

var reLB = regexp.MustCompile(`^/v2/lbaas/(loadbalancers|listeners|pools|healthmonitors)(?:/([^/]+))?(?:/(members)(?:/([^/]+))?)?$`)

// serveLBVersions answers Octavia's root: the versions list.
func (s *Sim) serveLBVersions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT", "updated": "2023-06-01T00:00:00Z",
		"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/load-balancer/v2"}},
	}}})
}

// lbPath normalises Octavia's two version prefixes, /v2.0 and /v2.
func lbPath(sub string) string {
	if rest, ok := strings.CutPrefix(sub, "/v2.0"); ok && (rest == "" || rest[0] == '/') {
		return "/v2" + rest
	}
	return sub
}

// lbOfPath is the ID of the load balancer a request's path is under, for
// fault messages; a made-up ID when there is none.
func (s *Sim) lbOfPath(sub string) string {
	m := reLB.FindStringSubmatch(lbPath(sub))
	s.mu.Lock()
	defer s.mu.Unlock()
	if m != nil && m[2] != "" {
		st := &s.lbaas
		switch m[1] {
		case "loadbalancers":
			if lb, ok := st.lbs[m[2]]; ok {
				return lb.id
			}
		case "listeners":
			if l, ok := st.listeners[m[2]]; ok {
				return l.lb.id
			}
		case "pools":
			if p, ok := st.pools[m[2]]; ok {
				return p.lb.id
			}
		case "healthmonitors":
			if hm, ok := st.monitors[m[2]]; ok {
				return hm.pool.lb.id
			}
		}
	}
	return uuid.NewString()
}

func (s *Sim) serveLB(w http.ResponseWriter, r *http.Request, sub string) {
	sub = lbPath(sub)
	if sub == "/v2" || sub == "/v2/" {
		s.serveLBVersions(w, r)
		return
	}
	m := reLB.FindStringSubmatch(sub)
	if m == nil {
		octaviaError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	kind, id, members, memberID := m[1], m[2], m[3] != "", m[4]
	if members && kind != "pools" {
		octaviaError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	notAllowed := func() { octaviaError(w, http.StatusMethodNotAllowed, "The method is not allowed for this resource.") }
	switch {
	case members && memberID == "":
		switch method {
		case http.MethodGet:
			s.listMembers(w, r, id)
		case http.MethodPost:
			s.createMember(w, r, id)
		case http.MethodPut:
			s.batchMembers(w, r, id)
		default:
			notAllowed()
		}
	case members:
		switch method {
		case http.MethodGet:
			s.showMember(w, id, memberID)
		case http.MethodPut:
			s.updateMember(w, r, id, memberID)
		case http.MethodDelete:
			s.deleteMember(w, id, memberID)
		default:
			notAllowed()
		}
	case id == "":
		switch method {
		case http.MethodGet:
			s.listLBObjects(w, r, kind)
		case http.MethodPost:
			switch kind {
			case "loadbalancers":
				s.createLB(w, r)
			case "listeners":
				s.createListener(w, r)
			case "pools":
				s.createPool(w, r)
			case "healthmonitors":
				s.createMonitor(w, r)
			}
		default:
			notAllowed()
		}
	default:
		switch method {
		case http.MethodGet:
			s.showLBObject(w, kind, id)
		case http.MethodPut:
			s.updateLBObject(w, r, kind, id)
		case http.MethodDelete:
			s.deleteLBObject(w, r, kind, id)
		default:
			notAllowed()
		}
	}
}

// --- JSON -----------------------------------------------------------------

func octaviaStamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Format(octaviaTime)
}

func idList(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = map[string]any{"id": id}
	}
	return out
}

func (s *Sim) common(o *lbObj) map[string]any {
	return map[string]any{
		"id": o.id, "name": o.name, "description": o.description,
		"provisioning_status": o.prov, "operating_status": o.oper, "admin_state_up": o.adminUp,
		"project_id": s.projectID, "tags": slices.Clone(o.tags),
		"created_at": o.created.Format(octaviaTime), "updated_at": octaviaStamp(o.updated),
	}
}

// children of a load balancer, in creation order. Call with s.mu held.
func (s *Sim) lbListeners(lb *loadBalancer) []*lbListener {
	var out []*lbListener
	for _, l := range s.lbaas.listeners {
		if l.lb == lb {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (s *Sim) lbPools(lb *loadBalancer) []*lbPool {
	var out []*lbPool
	for _, p := range s.lbaas.pools {
		if p.lb == lb {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (s *Sim) lbJSON(lb *loadBalancer) map[string]any {
	doc := s.common(&lb.lbObj)
	var ls, ps []string
	for _, l := range s.lbListeners(lb) {
		ls = append(ls, l.id)
	}
	for _, p := range s.lbPools(lb) {
		ps = append(ps, p.id)
	}
	doc["listeners"], doc["pools"] = idList(ls), idList(ps)
	doc["vip_address"], doc["vip_port_id"], doc["vip_subnet_id"], doc["vip_network_id"] = lb.vipAddress, lb.vipPortID, lb.subnetID, lb.networkID
	doc["vip_qos_policy_id"], doc["flavor_id"], doc["availability_zone"] = nil, nil, nil
	doc["provider"], doc["additional_vips"], doc["vip_vnic_type"] = "amphora", []any{}, "normal"
	return doc
}

func (s *Sim) listenerJSON(l *lbListener) map[string]any {
	doc := s.common(&l.lbObj)
	var pool any
	var pools []string
	if l.defaultPool != nil {
		pool = l.defaultPool.id
		pools = []string{l.defaultPool.id}
	}
	doc["protocol"], doc["protocol_port"], doc["connection_limit"] = l.protocol, l.port, l.connLimit
	doc["default_pool_id"], doc["loadbalancers"], doc["l7policies"] = pool, idList([]string{l.lb.id}), []any{}
	doc["pools"] = idList(pools)
	doc["default_tls_container_ref"], doc["sni_container_refs"], doc["insert_headers"] = nil, []string{}, map[string]string{}
	doc["timeout_client_data"], doc["timeout_member_connect"], doc["timeout_member_data"], doc["timeout_tcp_inspect"] = 50000, 5000, 50000, 0
	doc["client_authentication"], doc["client_ca_tls_container_ref"], doc["client_crl_container_ref"] = "NONE", nil, nil
	doc["allowed_cidrs"], doc["tls_ciphers"], doc["tls_versions"], doc["alpn_protocols"] = nil, nil, nil, nil
	doc["hsts_include_subdomains"], doc["hsts_max_age"], doc["hsts_preload"] = false, nil, false
	return doc
}

func (s *Sim) poolJSON(p *lbPool) map[string]any {
	doc := s.common(&p.lbObj)
	doc["operating_status"] = s.poolOper(p)
	var ls, ms []string
	for _, l := range s.lbListeners(p.lb) {
		if l.defaultPool == p {
			ls = append(ls, l.id)
		}
	}
	for _, m := range p.members {
		ms = append(ms, m.id)
	}
	var hm any
	if p.monitor != nil {
		hm = p.monitor.id
	}
	doc["protocol"], doc["lb_algorithm"], doc["healthmonitor_id"] = p.protocol, p.algorithm, hm
	doc["loadbalancers"], doc["listeners"], doc["members"] = idList([]string{p.lb.id}), idList(ls), idList(ms)
	doc["session_persistence"], doc["tls_enabled"], doc["tls_ciphers"], doc["tls_versions"] = nil, false, nil, nil
	doc["alpn_protocols"], doc["ca_tls_container_ref"], doc["crl_container_ref"], doc["tls_container_ref"] = nil, nil, nil, nil
	return doc
}

// poolOper is a pool's operating status: ONLINE without a monitor or
// members, else by its members' health.
func (s *Sim) poolOper(p *lbPool) string {
	if p.prov == stPendingCreate {
		return opOffline
	}
	if p.monitor == nil || len(p.members) == 0 {
		return opOnline
	}
	online := 0
	for _, m := range p.members {
		if m.oper == opOnline {
			online++
		}
	}
	switch online {
	case len(p.members):
		return opOnline
	case 0:
		return opError
	}
	return opDegraded
}

func (s *Sim) monitorJSON(hm *healthMonitor) map[string]any {
	doc := s.common(&hm.lbObj)
	doc["type"], doc["delay"], doc["timeout"] = hm.typ, hm.delay, hm.timeout
	doc["max_retries"], doc["max_retries_down"], doc["pools"] = hm.maxRetries, hm.maxRetriesDown, idList([]string{hm.pool.id})
	doc["http_method"], doc["url_path"], doc["expected_codes"] = nil, nil, nil
	if httpMonitor(hm.typ) {
		doc["http_method"], doc["url_path"], doc["expected_codes"] = hm.httpMethod, hm.urlPath, hm.expectedCodes
	}
	doc["http_version"], doc["domain_name"] = nil, nil
	return doc
}

func (s *Sim) memberJSON(m *member) map[string]any {
	doc := s.common(&m.lbObj)
	var subnet, maddr, mport any
	if m.subnetID != "" {
		subnet = m.subnetID
	}
	if m.monitorAddress != "" {
		maddr = m.monitorAddress
	}
	if m.monitorPort != 0 {
		mport = m.monitorPort
	}
	doc["address"], doc["protocol_port"], doc["weight"], doc["backup"] = m.address, m.port, m.weight, m.backup
	doc["subnet_id"], doc["monitor_address"], doc["monitor_port"], doc["vnic_type"] = subnet, maddr, mport, "normal"
	return doc
}

// --- lists and shows ------------------------------------------------------

// matchTags applies Octavia's tag filters: tags (all of), tags-any,
// not-tags, not-tags-any, each a comma list, possibly repeated.
func matchTags(q url.Values, tags []string) bool {
	split := func(k string) []string {
		var out []string
		for _, v := range q[k] {
			for t := range strings.SplitSeq(v, ",") {
				if t != "" {
					out = append(out, t)
				}
			}
		}
		return out
	}
	has := func(t string) bool { return slices.Contains(tags, t) }
	if want := split("tags"); len(want) > 0 && !all(want, has) {
		return false
	}
	if want := split("tags-any"); len(want) > 0 && !slices.ContainsFunc(want, has) {
		return false
	}
	if want := split("not-tags"); len(want) > 0 && all(want, has) {
		return false
	}
	if want := split("not-tags-any"); len(want) > 0 && slices.ContainsFunc(want, has) {
		return false
	}
	return true
}

func all(xs []string, f func(string) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

// writeLBList filters docs (in creation order) by the query and answers
// one page of them: limit and marker, with a next link on a full page.
func (s *Sim) writeLBList(w http.ResponseWriter, r *http.Request, key string, docs []map[string]any, tags [][]string) {
	q := r.URL.Query()
	filters := url.Values{}
	for k, v := range q {
		switch k {
		case "limit", "marker", "page_reverse", "sort", "sort_key", "sort_dir", "fields",
			"tags", "tags-any", "not-tags", "not-tags-any":
		default:
			filters[k] = v
		}
	}
	var list []map[string]any
	for i, d := range docs {
		if matchQuery(d, filters) && matchTags(q, tags[i]) {
			list = append(list, d)
		}
	}
	if marker := q.Get("marker"); marker != "" {
		i := slices.IndexFunc(list, func(d map[string]any) bool { return d["id"] == marker })
		if i < 0 {
			octaviaError(w, http.StatusNotFound, "Marker "+marker+" could not be found.")
			return
		}
		list = list[i+1:]
	}
	links := []any{}
	if limit, err := strconv.Atoi(q.Get("limit")); err == nil && limit > 0 && len(list) > limit {
		list = list[:limit]
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("marker", fmt.Sprint(list[len(list)-1]["id"]))
		links = append(links, map[string]any{"rel": "next", "href": s.endpoint + "/load-balancer" + lbPath(strings.TrimPrefix(r.URL.Path, "/load-balancer")) + "?" + nq.Encode()})
	}
	if list == nil {
		list = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{key: list, key + "_links": links})
}

func (s *Sim) listLBObjects(w http.ResponseWriter, r *http.Request, kind string) {
	s.mu.Lock()
	var objs []*lbObj
	var docs []map[string]any
	st := &s.lbaas
	switch kind {
	case "loadbalancers":
		for _, x := range st.lbs {
			objs = append(objs, &x.lbObj)
		}
	case "listeners":
		for _, x := range st.listeners {
			objs = append(objs, &x.lbObj)
		}
	case "pools":
		for _, x := range st.pools {
			objs = append(objs, &x.lbObj)
		}
	case "healthmonitors":
		for _, x := range st.monitors {
			objs = append(objs, &x.lbObj)
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].seq < objs[j].seq })
	var tags [][]string
	for _, o := range objs {
		docs = append(docs, s.docOf(kind, o.id))
		tags = append(tags, o.tags)
	}
	s.mu.Unlock()
	key := kind
	if kind == "loadbalancers" {
		key = "loadbalancers"
	}
	// Filters by parent: loadbalancer_id of pools and listeners and
	// pool_id of monitors are not attributes of the JSON, so resolve them.
	q := r.URL.Query()
	if v := q.Get("loadbalancer_id"); v != "" && (kind == "pools" || kind == "listeners") {
		var keep []map[string]any
		var keepTags [][]string
		for i, d := range docs {
			if lbs, _ := d["loadbalancers"].([]any); len(lbs) == 1 && lbs[0].(map[string]any)["id"] == v {
				keep, keepTags = append(keep, d), append(keepTags, tags[i])
			}
		}
		docs, tags = keep, keepTags
	}
	if v := q.Get("pool_id"); v != "" && kind == "healthmonitors" {
		var keep []map[string]any
		var keepTags [][]string
		for i, d := range docs {
			if ps, _ := d["pools"].([]any); len(ps) == 1 && ps[0].(map[string]any)["id"] == v {
				keep, keepTags = append(keep, d), append(keepTags, tags[i])
			}
		}
		docs, tags = keep, keepTags
	}
	s.writeLBList(w, r, key, docs, tags)
}

// docOf is an object's JSON by kind and ID; nil when it does not exist.
// Call with s.mu held.
func (s *Sim) docOf(kind, id string) map[string]any {
	st := &s.lbaas
	switch kind {
	case "loadbalancers":
		if x, ok := st.lbs[id]; ok {
			return s.lbJSON(x)
		}
	case "listeners":
		if x, ok := st.listeners[id]; ok {
			return s.listenerJSON(x)
		}
	case "pools":
		if x, ok := st.pools[id]; ok {
			return s.poolJSON(x)
		}
	case "healthmonitors":
		if x, ok := st.monitors[id]; ok {
			return s.monitorJSON(x)
		}
	}
	return nil
}

var lbKinds = map[string]struct{ key, name string }{
	"loadbalancers":  {"loadbalancer", "Load Balancer"},
	"listeners":      {"listener", "Listener"},
	"pools":          {"pool", "Pool"},
	"healthmonitors": {"healthmonitor", "Health Monitor"},
}

func (s *Sim) showLBObject(w http.ResponseWriter, kind, id string) {
	s.mu.Lock()
	doc := s.docOf(kind, id)
	s.mu.Unlock()
	k := lbKinds[kind]
	if doc == nil {
		octaviaError(w, http.StatusNotFound, k.name+" "+id+" not found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{k.key: doc})
}

func (s *Sim) listMembers(w http.ResponseWriter, r *http.Request, poolID string) {
	s.mu.Lock()
	p, ok := s.lbaas.pools[poolID]
	var docs []map[string]any
	var tags [][]string
	if ok {
		for _, m := range p.members {
			docs = append(docs, s.memberJSON(m))
			tags = append(tags, m.tags)
		}
	}
	s.mu.Unlock()
	if !ok {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	s.writeLBList(w, r, "members", docs, tags)
}

func (p *lbPool) member(id string) *member {
	for _, m := range p.members {
		if m.id == id {
			return m
		}
	}
	return nil
}

func (s *Sim) showMember(w http.ResponseWriter, poolID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.lbaas.pools[poolID]
	if !ok {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	m := p.member(id)
	if m == nil {
		octaviaError(w, http.StatusNotFound, "Member "+id+" not found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"member": s.memberJSON(m)})
}

// --- bodies -----------------------------------------------------------------

func keySet(keys ...string) map[string]bool {
	out := map[string]bool{}
	for _, k := range keys {
		out[k] = true
	}
	return out
}

var (
	lbCreateKeys = keySet("name", "description", "vip_port_id", "vip_subnet_id", "vip_network_id", "project_id",
		"tenant_id", "vip_address", "vip_qos_policy_id", "admin_state_up", "flavor_id", "availability_zone",
		"provider", "listeners", "pools", "tags", "additional_vips", "vip_sg_ids", "vip_vnic_type")
	lbUpdateKeys       = keySet("name", "description", "admin_state_up", "vip_qos_policy_id", "tags")
	listenerCreateKeys = keySet("loadbalancer_id", "protocol", "protocol_port", "project_id", "tenant_id", "name",
		"default_pool_id", "default_pool", "description", "connection_limit", "default_tls_container_ref",
		"sni_container_refs", "admin_state_up", "l7policies", "timeout_client_data", "timeout_member_data",
		"timeout_member_connect", "timeout_tcp_inspect", "insert_headers", "allowed_cidrs", "alpn_protocols",
		"client_authentication", "client_ca_tls_container_ref", "client_crl_container_ref",
		"hsts_include_subdomains", "hsts_max_age", "hsts_preload", "tls_ciphers", "tls_versions", "tags")
	listenerUpdateKeys = keySet("name", "default_pool_id", "description", "connection_limit", "default_tls_container_ref",
		"sni_container_refs", "admin_state_up", "timeout_client_data", "timeout_member_data",
		"timeout_member_connect", "timeout_tcp_inspect", "insert_headers", "allowed_cidrs", "alpn_protocols",
		"client_authentication", "client_ca_tls_container_ref", "client_crl_container_ref",
		"hsts_include_subdomains", "hsts_max_age", "hsts_preload", "tls_ciphers", "tls_versions", "tags")
	poolCreateKeys = keySet("lb_algorithm", "protocol", "loadbalancer_id", "listener_id", "project_id", "tenant_id",
		"name", "description", "session_persistence", "alpn_protocols", "ca_tls_container_ref", "crl_container_ref",
		"tls_enabled", "tls_ciphers", "tls_container_ref", "tls_versions", "admin_state_up", "members",
		"healthmonitor", "tags")
	poolUpdateKeys = keySet("name", "description", "lb_algorithm", "admin_state_up", "session_persistence",
		"alpn_protocols", "ca_tls_container_ref", "crl_container_ref", "tls_enabled", "tls_ciphers",
		"tls_container_ref", "tls_versions", "tags")
	monitorCreateKeys = keySet("pool_id", "type", "delay", "timeout", "max_retries", "max_retries_down", "url_path",
		"http_method", "http_version", "expected_codes", "tenant_id", "project_id", "name", "admin_state_up",
		"domain_name", "tags")
	monitorUpdateKeys = keySet("delay", "timeout", "max_retries", "max_retries_down", "url_path", "http_method",
		"http_version", "expected_codes", "name", "admin_state_up", "domain_name", "tags")
	memberCreateKeys = keySet("address", "protocol_port", "name", "project_id", "tenant_id", "weight", "subnet_id",
		"admin_state_up", "backup", "monitor_address", "monitor_port", "tags", "request_sriov", "vnic_type")
	memberUpdateKeys = keySet("name", "weight", "admin_state_up", "backup", "monitor_address", "monitor_port", "tags")
)

// readLBBody reads {"<wrapper>": {...}} into dst, refusing attributes the
// API does not know, as WSME does; it returns the keys present.
func readLBBody(r *http.Request, wrapper string, allowed map[string]bool, dst any) (map[string]json.RawMessage, string) {
	var env map[string]json.RawMessage
	if err := decodeJSON(r, &env); err != nil {
		return nil, "Invalid input: " + err.Error()
	}
	inner, ok := env[wrapper]
	if !ok {
		return nil, "Missing argument: \"" + wrapper + "\""
	}
	return checkLBObject(inner, wrapper, allowed, dst)
}

func checkLBObject(inner json.RawMessage, wrapper string, allowed map[string]bool, dst any) (map[string]json.RawMessage, string) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(inner, &keys); err != nil || keys == nil {
		return nil, "Invalid input for field/attribute " + wrapper + ": not an object"
	}
	for k := range keys {
		if !allowed[k] {
			return nil, "Unknown attribute for argument " + wrapper + ": " + k
		}
	}
	if err := json.Unmarshal(inner, dst); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if ok := asTypeError(err, &te); ok {
			field = te.Field
		}
		return nil, fmt.Sprintf("Invalid input for field/attribute %s. Value: %s", field, err.Error())
	}
	return keys, ""
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	e, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = e
	}
	return ok
}

func rangeMsg(field string, v, lo, hi int) string {
	if v < lo {
		return fmt.Sprintf("Invalid input for field/attribute %s. Value: '%d'. Value should be greater or equal to %d", field, v, lo)
	}
	if v > hi {
		return fmt.Sprintf("Invalid input for field/attribute %s. Value: '%d'. Value should be lower or equal to %d", field, v, hi)
	}
	return ""
}

func mandatory(field string) string {
	return "Invalid input for field/attribute " + field + ". Value: 'Unset'. Mandatory field missing."
}

func oneOf(field, v string, allowed ...string) string {
	if slices.Contains(allowed, v) {
		return ""
	}
	return fmt.Sprintf("Invalid input for field/attribute %s. Value: '%s'. Value should be one of: %s", field, v, strings.Join(allowed, ", "))
}

type commonBody struct {
	Name         *string   `json:"name"`
	Description  *string   `json:"description"`
	AdminStateUp *bool     `json:"admin_state_up"`
	Tags         *[]string `json:"tags"`
}

func (b *commonBody) apply(o *lbObj) {
	if b.Name != nil {
		o.name = *b.Name
	}
	if b.Description != nil {
		o.description = *b.Description
	}
	if b.AdminStateUp != nil {
		o.adminUp = *b.AdminStateUp
	}
	if b.Tags != nil {
		o.tags = slices.Clone(*b.Tags)
		if o.tags == nil {
			o.tags = []string{}
		}
	}
}

// --- the status machine ---------------------------------------------------------

// pend puts a load balancer in a PENDING_* status for a drawn
// LBUpdateTime, then runs done (under s.mu) and makes it ACTIVE again
// unless done removed it. done returns proxies to stop once the lock is
// released. Call with s.mu held.
func (s *Sim) pend(lb *loadBalancer, status string, done func() []*proxy) {
	lb.prov = status
	lb.touch()
	s.after(s.draw(s.opts.LBUpdateTime), func() {
		s.mu.Lock()
		stops := done()
		if !lb.gone {
			lb.prov = stActive
			lb.oper = opOnline
			if !lb.adminUp {
				lb.oper = opOffline
			}
		}
		s.mu.Unlock()
		for _, p := range stops {
			p.stop()
		}
	})
}

// settle ends an object's own PENDING_* status.
func settle(o *lbObj) {
	o.prov = stActive
	if o.oper == opOffline && o.adminUp {
		o.oper = opOnline
	}
}

// lbFor finds a load balancer a change is under and checks that it may be
// changed; it answers the refusal itself. Call with s.mu held.
func (s *Sim) mutable(w http.ResponseWriter, lb *loadBalancer) bool {
	if pending(lb.prov) {
		octaviaError(w, http.StatusConflict, immutableMsg(lb))
		return false
	}
	return true
}

// --- creates ------------------------------------------------------------------------

type lbBody struct {
	commonBody
	VipSubnetID  string          `json:"vip_subnet_id"`
	VipNetworkID string          `json:"vip_network_id"`
	VipPortID    string          `json:"vip_port_id"`
	VipAddress   string          `json:"vip_address"`
	Listeners    json.RawMessage `json:"listeners"`
	Pools        json.RawMessage `json:"pools"`
}

func emptyList(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t == "" || t == "null" || t == "[]"
}

func (s *Sim) createLB(w http.ResponseWriter, r *http.Request) {
	var b lbBody
	if _, msg := readLBBody(r, "loadbalancer", lbCreateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	if !emptyList(b.Listeners) || !emptyList(b.Pools) {
		octaviaError(w, http.StatusBadRequest, "The simulator does not create populated load balancers: create listeners and pools one by one")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var sn subnet
	var ok bool
	switch {
	case b.VipSubnetID != "":
		if sn, ok = s.subnetByID(b.VipSubnetID); !ok {
			octaviaError(w, http.StatusBadRequest, "Validation failure: Subnet "+b.VipSubnetID+" not found.")
			return
		}
	case b.VipNetworkID != "":
		if _, ok = s.network(b.VipNetworkID); !ok {
			octaviaError(w, http.StatusBadRequest, "Validation failure: Network "+b.VipNetworkID+" not found.")
			return
		}
		sn, _ = s.subnetByID(s.subnetOf(b.VipNetworkID))
	case b.VipPortID != "":
		octaviaError(w, http.StatusBadRequest, "The simulator does not take a VIP port: give vip_subnet_id")
		return
	default:
		octaviaError(w, http.StatusBadRequest, "Validation failure: VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.")
		return
	}
	lb := s.newLB(b, sn)
	s.pend(lb, stPendingCreate, func() []*proxy { return nil })
	writeJSON(w, http.StatusCreated, map[string]any{"loadbalancer": s.lbJSON(lb)})
}

// newLB records a load balancer in PENDING_CREATE. Call with s.mu held.
func (s *Sim) newLB(b lbBody, sn subnet) *loadBalancer {
	lb := &loadBalancer{lbObj: s.newObj("", nil), subnetID: sn.ID, networkID: sn.NetworkID, vipPortID: uuid.NewString()}
	b.apply(&lb.lbObj)
	lb.vipAddress = b.VipAddress
	if lb.vipAddress == "" {
		lb.vipAddress, _ = allocAddress(nil)
	}
	s.lbaas.lbs[lb.id] = lb
	return lb
}

type listenerBody struct {
	commonBody
	LoadbalancerID string  `json:"loadbalancer_id"`
	Protocol       string  `json:"protocol"`
	ProtocolPort   *int    `json:"protocol_port"`
	DefaultPoolID  *string `json:"default_pool_id"`
	ConnLimit      *int    `json:"connection_limit"`
}

func (s *Sim) createListener(w http.ResponseWriter, r *http.Request) {
	var b listenerBody
	if _, msg := readLBBody(r, "listener", listenerCreateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	msg := ""
	switch {
	case b.LoadbalancerID == "":
		msg = mandatory("loadbalancer_id")
	case b.Protocol == "":
		msg = mandatory("protocol")
	case b.ProtocolPort == nil:
		msg = mandatory("protocol_port")
	default:
		if msg = oneOf("protocol", b.Protocol, "HTTP", "TCP"); msg == "" {
			msg = rangeMsg("protocol_port", *b.ProtocolPort, 1, 65535)
		}
	}
	if msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lb, ok := s.lbaas.lbs[b.LoadbalancerID]
	if !ok {
		octaviaError(w, http.StatusNotFound, "Load Balancer "+b.LoadbalancerID+" not found.")
		return
	}
	if !s.mutable(w, lb) {
		return
	}
	for _, l := range s.lbListeners(lb) {
		if l.port == *b.ProtocolPort {
			octaviaError(w, http.StatusConflict, fmt.Sprintf("Another Listener on this Load Balancer is already using protocol_port %d", l.port))
			return
		}
	}
	var pool *lbPool
	if b.DefaultPoolID != nil && *b.DefaultPoolID != "" {
		if pool = s.lbaas.pools[*b.DefaultPoolID]; pool == nil || pool.lb != lb {
			octaviaError(w, http.StatusNotFound, "Pool "+*b.DefaultPoolID+" not found.")
			return
		}
	}
	l, err := s.newListener(lb, b, pool)
	if err != nil {
		octaviaError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.pend(lb, stPendingUpdate, func() []*proxy {
		if s.lbaas.listeners[l.id] == l {
			settle(&l.lbObj)
		}
		return nil
	})
	writeJSON(w, http.StatusCreated, map[string]any{"listener": s.listenerJSON(l)})
}

// newListener records a listener in PENDING_CREATE and opens its
// forwarding socket. Call with s.mu held.
func (s *Sim) newListener(lb *loadBalancer, b listenerBody, pool *lbPool) (*lbListener, error) {
	if s.closed {
		return nil, fmt.Errorf("sim: closed")
	}
	l := &lbListener{lbObj: s.newObj("", nil), lb: lb, protocol: b.Protocol, port: *b.ProtocolPort, connLimit: -1, defaultPool: pool}
	b.apply(&l.lbObj)
	if b.ConnLimit != nil {
		l.connLimit = *b.ConnLimit
	}
	p, err := startProxy([]string{"127.0.0.1:0"}, s.listenerHandler(l))
	if err != nil {
		return nil, fmt.Errorf("sim: open the listener's socket: %w", err)
	}
	l.proxy, l.url = p, "http://"+p.addrs[0]
	s.lbaas.listeners[l.id] = l
	return l, nil
}

type poolBody struct {
	commonBody
	LoadbalancerID string          `json:"loadbalancer_id"`
	ListenerID     string          `json:"listener_id"`
	Protocol       string          `json:"protocol"`
	LBAlgorithm    *string         `json:"lb_algorithm"`
	Members        json.RawMessage `json:"members"`
	Healthmonitor  json.RawMessage `json:"healthmonitor"`
}

var lbAlgorithms = []string{"ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"}

func (s *Sim) createPool(w http.ResponseWriter, r *http.Request) {
	var b poolBody
	if _, msg := readLBBody(r, "pool", poolCreateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	msg := ""
	switch {
	case b.Protocol == "":
		msg = mandatory("protocol")
	case b.LBAlgorithm == nil:
		msg = mandatory("lb_algorithm")
	case b.LoadbalancerID == "" && b.ListenerID == "":
		msg = "Validation failure: Must provide at least one of: listener_id, loadbalancer_id"
	case !emptyList(b.Members) || strings.TrimSpace(string(b.Healthmonitor)) != "" && string(b.Healthmonitor) != "null":
		msg = "The simulator does not create populated pools: add members and the health monitor one by one"
	default:
		if msg = oneOf("protocol", b.Protocol, "HTTP", "HTTPS", "TCP", "PROXY", "PROXYV2"); msg == "" {
			msg = oneOf("lb_algorithm", *b.LBAlgorithm, lbAlgorithms...)
		}
	}
	if msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var lb *loadBalancer
	var l *lbListener
	if b.ListenerID != "" {
		if l = s.lbaas.listeners[b.ListenerID]; l == nil {
			octaviaError(w, http.StatusNotFound, "Listener "+b.ListenerID+" not found.")
			return
		}
		if b.LoadbalancerID != "" && b.LoadbalancerID != l.lb.id {
			octaviaError(w, http.StatusBadRequest, "Validation failure: The listener is not on load balancer "+b.LoadbalancerID)
			return
		}
		lb = l.lb
		if l.defaultPool != nil {
			octaviaError(w, http.StatusConflict, "Listener "+l.id+" is already using a default pool "+l.defaultPool.id+".")
			return
		}
	} else if lb = s.lbaas.lbs[b.LoadbalancerID]; lb == nil {
		octaviaError(w, http.StatusNotFound, "Load Balancer "+b.LoadbalancerID+" not found.")
		return
	}
	if !s.mutable(w, lb) {
		return
	}
	p := s.newPool(lb, b)
	if l != nil {
		l.defaultPool = p
	}
	s.pend(lb, stPendingUpdate, func() []*proxy {
		if s.lbaas.pools[p.id] == p {
			settle(&p.lbObj)
		}
		return nil
	})
	writeJSON(w, http.StatusCreated, map[string]any{"pool": s.poolJSON(p)})
}

// newPool records a pool in PENDING_CREATE. Call with s.mu held.
func (s *Sim) newPool(lb *loadBalancer, b poolBody) *lbPool {
	p := &lbPool{lbObj: s.newObj("", nil), lb: lb, protocol: b.Protocol, algorithm: *b.LBAlgorithm}
	b.apply(&p.lbObj)
	s.lbaas.pools[p.id] = p
	return p
}

type monitorBody struct {
	commonBody
	PoolID         string  `json:"pool_id"`
	Type           string  `json:"type"`
	Delay          *int    `json:"delay"`
	Timeout        *int    `json:"timeout"`
	MaxRetries     *int    `json:"max_retries"`
	MaxRetriesDown *int    `json:"max_retries_down"`
	URLPath        *string `json:"url_path"`
	HTTPMethod     *string `json:"http_method"`
	ExpectedCodes  *string `json:"expected_codes"`
}

func httpMonitor(typ string) bool { return typ == "HTTP" || typ == "HTTPS" }

// check validates the numbers and strings a monitor body sets.
func (b *monitorBody) check() string {
	for _, f := range []struct {
		name   string
		v      *int
		lo, hi int
	}{{"delay", b.Delay, 0, 2147483647}, {"timeout", b.Timeout, 0, 2147483647},
		{"max_retries", b.MaxRetries, 1, 10}, {"max_retries_down", b.MaxRetriesDown, 1, 10}} {
		if f.v != nil {
			if msg := rangeMsg(f.name, *f.v, f.lo, f.hi); msg != "" {
				return msg
			}
		}
	}
	if b.URLPath != nil && !strings.HasPrefix(*b.URLPath, "/") {
		return fmt.Sprintf("Invalid input for field/attribute url_path. Value: '%s'. Value should be a valid URL path", *b.URLPath)
	}
	if b.ExpectedCodes != nil {
		if _, ok := parseCodes(*b.ExpectedCodes); !ok {
			return fmt.Sprintf("Invalid input for field/attribute expected_codes. Value: '%s'. Value should match the pattern ^(\\d{3}(\\s*,\\s*\\d{3})*)$|^(\\d{3}-\\d{3})$", *b.ExpectedCodes)
		}
	}
	if b.HTTPMethod != nil {
		if msg := oneOf("http_method", *b.HTTPMethod, "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"); msg != "" {
			return msg
		}
	}
	return ""
}

func (b *monitorBody) applyMonitor(hm *healthMonitor) {
	b.apply(&hm.lbObj)
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&hm.delay, b.Delay)
	set(&hm.timeout, b.Timeout)
	set(&hm.maxRetries, b.MaxRetries)
	set(&hm.maxRetriesDown, b.MaxRetriesDown)
	if b.URLPath != nil {
		hm.urlPath = *b.URLPath
	}
	if b.HTTPMethod != nil {
		hm.httpMethod = *b.HTTPMethod
	}
	if b.ExpectedCodes != nil {
		hm.expectedCodes = *b.ExpectedCodes
	}
}

func (s *Sim) createMonitor(w http.ResponseWriter, r *http.Request) {
	var b monitorBody
	if _, msg := readLBBody(r, "healthmonitor", monitorCreateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	msg := ""
	switch {
	case b.PoolID == "":
		msg = mandatory("pool_id")
	case b.Type == "":
		msg = mandatory("type")
	case b.Delay == nil:
		msg = mandatory("delay")
	case b.Timeout == nil:
		msg = mandatory("timeout")
	case b.MaxRetries == nil:
		msg = mandatory("max_retries")
	default:
		if msg = oneOf("type", b.Type, "HTTP", "HTTPS", "TCP", "PING", "TLS-HELLO"); msg == "" {
			msg = b.check()
		}
	}
	if msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lbaas.pools[b.PoolID]
	if p == nil {
		octaviaError(w, http.StatusNotFound, "Pool "+b.PoolID+" not found.")
		return
	}
	if !s.mutable(w, p.lb) {
		return
	}
	if p.monitor != nil {
		octaviaError(w, http.StatusConflict, "This pool already has a health monitor")
		return
	}
	hm := s.newMonitor(p, b)
	s.pend(p.lb, stPendingUpdate, func() []*proxy {
		if s.lbaas.monitors[hm.id] == hm {
			settle(&hm.lbObj)
		}
		return nil
	})
	writeJSON(w, http.StatusCreated, map[string]any{"healthmonitor": s.monitorJSON(hm)})
}

// newMonitor records a health monitor in PENDING_CREATE and starts
// probing the pool's members, which are OFFLINE until probed. Call with
// s.mu held.
func (s *Sim) newMonitor(p *lbPool, b monitorBody) *healthMonitor {
	hm := &healthMonitor{lbObj: s.newObj("", nil), pool: p, typ: b.Type, maxRetriesDown: 3,
		httpMethod: "GET", urlPath: "/", expectedCodes: "200"}
	b.applyMonitor(hm)
	s.lbaas.monitors[hm.id] = hm
	p.monitor = hm
	for _, m := range p.members {
		m.rise, m.fall = 0, 0
		m.oper = opOffline
	}
	s.startMonitor(hm)
	return hm
}

type memberBody struct {
	Name           *string   `json:"name"`
	Address        string    `json:"address"`
	ProtocolPort   *int      `json:"protocol_port"`
	Weight         *int      `json:"weight"`
	SubnetID       string    `json:"subnet_id"`
	AdminStateUp   *bool     `json:"admin_state_up"`
	Backup         *bool     `json:"backup"`
	MonitorAddress *string   `json:"monitor_address"`
	MonitorPort    *int      `json:"monitor_port"`
	Tags           *[]string `json:"tags"`
}

// checkCreate validates a new member's body. Call with s.mu held.
func (s *Sim) checkMember(b *memberBody, create bool) string {
	if create {
		if b.Address == "" {
			return mandatory("address")
		}
		if b.ProtocolPort == nil {
			return mandatory("protocol_port")
		}
		if net.ParseIP(b.Address) == nil {
			return fmt.Sprintf("Invalid input for field/attribute address. Value: '%s'. Value should be IPv4 or IPv6 format", b.Address)
		}
		if msg := rangeMsg("protocol_port", *b.ProtocolPort, 1, 65535); msg != "" {
			return msg
		}
		if b.SubnetID != "" {
			if _, ok := s.subnetByID(b.SubnetID); !ok {
				return "Validation failure: Subnet " + b.SubnetID + " not found."
			}
		}
	}
	if b.Weight != nil {
		if msg := rangeMsg("weight", *b.Weight, 0, 256); msg != "" {
			return msg
		}
	}
	if b.MonitorPort != nil {
		if msg := rangeMsg("monitor_port", *b.MonitorPort, 1, 65535); msg != "" {
			return msg
		}
	}
	if b.MonitorAddress != nil && *b.MonitorAddress != "" && net.ParseIP(*b.MonitorAddress) == nil {
		return fmt.Sprintf("Invalid input for field/attribute monitor_address. Value: '%s'. Value should be IPv4 or IPv6 format", *b.MonitorAddress)
	}
	return ""
}

func (b *memberBody) applyMember(m *member) {
	if b.Name != nil {
		m.name = *b.Name
	}
	if b.Weight != nil {
		m.weight = *b.Weight
	}
	if b.AdminStateUp != nil && *b.AdminStateUp != m.adminUp {
		m.adminUp = *b.AdminStateUp
		m.rise, m.fall = 0, 0
		m.oper = memberStartOper(m)
	}
	if b.Backup != nil {
		m.backup = *b.Backup
	}
	if b.MonitorAddress != nil {
		m.monitorAddress = *b.MonitorAddress
	}
	if b.MonitorPort != nil {
		m.monitorPort = *b.MonitorPort
	}
	if b.Tags != nil {
		m.tags = slices.Clone(*b.Tags)
		if m.tags == nil {
			m.tags = []string{}
		}
	}
}

// memberStartOper is a member's operating status before any probe:
// NO_MONITOR without a health monitor, OFFLINE otherwise or when down.
func memberStartOper(m *member) string {
	switch {
	case !m.adminUp:
		return opOffline
	case m.pool.monitor == nil:
		return opNoMonitor
	}
	return opOffline
}

func duplicateMember(address string, port int) string {
	return fmt.Sprintf("Another member on this pool is already using ip %s on protocol_port %d", address, port)
}

// newMember adds a member to a pool in PENDING_CREATE. Call with s.mu held.
func (s *Sim) newMember(p *lbPool, b memberBody) *member {
	m := &member{lbObj: s.newObj("", nil), pool: p, address: b.Address, port: *b.ProtocolPort, weight: 1, subnetID: b.SubnetID}
	b.applyMember(m)
	m.oper = memberStartOper(m)
	p.members = append(p.members, m)
	return m
}

func (s *Sim) createMember(w http.ResponseWriter, r *http.Request, poolID string) {
	var b memberBody
	if _, msg := readLBBody(r, "member", memberCreateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lbaas.pools[poolID]
	if p == nil {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	if msg := s.checkMember(&b, true); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	if !s.mutable(w, p.lb) {
		return
	}
	for _, m := range p.members {
		if m.address == b.Address && m.port == *b.ProtocolPort {
			octaviaError(w, http.StatusConflict, duplicateMember(b.Address, m.port))
			return
		}
	}
	m := s.newMember(p, b)
	fail := s.takeMemberFailure()
	s.pend(p.lb, stPendingUpdate, func() []*proxy {
		s.settleMember(m, fail)
		return nil
	})
	writeJSON(w, http.StatusCreated, map[string]any{"member": s.memberJSON(m)})
}

// takeMemberFailure spends one of FailNextMembers. Call with s.mu held.
func (s *Sim) takeMemberFailure() bool {
	if s.failMembers > 0 {
		s.failMembers--
		return true
	}
	return false
}

// settleMember ends a member's create or update: ACTIVE, or ERROR for a
// create FailNextMembers made fail. Call with s.mu held.
func (s *Sim) settleMember(m *member, fail bool) {
	if m.gone {
		return
	}
	if fail {
		m.prov = stError
		return
	}
	m.prov = stActive
}

func (s *Sim) updateMember(w http.ResponseWriter, r *http.Request, poolID, id string) {
	var b memberBody
	if _, msg := readLBBody(r, "member", memberUpdateKeys, &b); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lbaas.pools[poolID]
	if p == nil {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	m := p.member(id)
	if m == nil {
		octaviaError(w, http.StatusNotFound, "Member "+id+" not found.")
		return
	}
	if msg := s.checkMember(&b, false); msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	if !s.mutable(w, p.lb) {
		return
	}
	b.applyMember(m)
	m.touch()
	m.prov = stPendingUpdate
	s.pend(p.lb, stPendingUpdate, func() []*proxy {
		s.settleMember(m, false)
		return nil
	})
	writeJSON(w, http.StatusOK, map[string]any{"member": s.memberJSON(m)})
}

// removeMember takes a member out of its pool. Call with s.mu held.
func removeMember(m *member) {
	m.gone = true
	m.pool.members = slices.DeleteFunc(m.pool.members, func(x *member) bool { return x == m })
}

func (s *Sim) deleteMember(w http.ResponseWriter, poolID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lbaas.pools[poolID]
	if p == nil {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	m := p.member(id)
	if m == nil {
		octaviaError(w, http.StatusNotFound, "Member "+id+" not found.")
		return
	}
	if !s.mutable(w, p.lb) {
		return
	}
	m.prov = stPendingDelete
	s.pend(p.lb, stPendingUpdate, func() []*proxy {
		removeMember(m)
		return nil
	})
	w.WriteHeader(http.StatusNoContent)
}

// batchMembers answers PUT /pools/{id}/members: the body's members
// replace the pool's whole set. Members matched by address and port are
// updated, the others created, and members missing from the body deleted.
func (s *Sim) batchMembers(w http.ResponseWriter, r *http.Request, poolID string) {
	var env struct {
		Members []json.RawMessage `json:"members"`
	}
	if err := decodeJSON(r, &env); err != nil || env.Members == nil {
		octaviaError(w, http.StatusBadRequest, mandatory("members"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lbaas.pools[poolID]
	if p == nil {
		octaviaError(w, http.StatusNotFound, "Pool "+poolID+" not found.")
		return
	}
	bodies := make([]memberBody, len(env.Members))
	seen := map[string]bool{}
	for i, raw := range env.Members {
		if _, msg := checkLBObject(raw, "member", memberCreateKeys, &bodies[i]); msg != "" {
			octaviaError(w, http.StatusBadRequest, msg)
			return
		}
		if msg := s.checkMember(&bodies[i], true); msg != "" {
			octaviaError(w, http.StatusBadRequest, msg)
			return
		}
		key := net.JoinHostPort(bodies[i].Address, strconv.Itoa(*bodies[i].ProtocolPort))
		if seen[key] {
			octaviaError(w, http.StatusBadRequest, duplicateMember(bodies[i].Address, *bodies[i].ProtocolPort))
			return
		}
		seen[key] = true
	}
	if !s.mutable(w, p.lb) {
		return
	}
	type change struct {
		m    *member
		fail bool
	}
	var changed []change
	var deleted []*member
	kept := map[*member]bool{}
	for _, b := range bodies {
		i := slices.IndexFunc(p.members, func(m *member) bool { return m.address == b.Address && m.port == *b.ProtocolPort })
		if i >= 0 {
			m := p.members[i]
			b.applyMember(m)
			m.touch()
			m.prov = stPendingUpdate
			kept[m] = true
			changed = append(changed, change{m, false})
			continue
		}
		m := s.newMember(p, b)
		kept[m] = true
		changed = append(changed, change{m, s.takeMemberFailure()})
	}
	for _, m := range p.members {
		if !kept[m] {
			m.prov = stPendingDelete
			deleted = append(deleted, m)
		}
	}
	s.pend(p.lb, stPendingUpdate, func() []*proxy {
		for _, c := range changed {
			s.settleMember(c.m, c.fail)
		}
		for _, m := range deleted {
			removeMember(m)
		}
		return nil
	})
	w.WriteHeader(http.StatusAccepted)
}

// --- updates and deletes of the other objects ---------------------------------

func (s *Sim) updateLBObject(w http.ResponseWriter, r *http.Request, kind, id string) {
	k := lbKinds[kind]
	var (
		lbB  lbBody
		lB   listenerBody
		pB   poolBody
		hmB  monitorBody
		keys map[string]json.RawMessage
		msg  string
	)
	switch kind {
	case "loadbalancers":
		keys, msg = readLBBody(r, k.key, lbUpdateKeys, &lbB)
	case "listeners":
		keys, msg = readLBBody(r, k.key, listenerUpdateKeys, &lB)
		if msg == "" && lB.ConnLimit != nil && *lB.ConnLimit < -1 {
			msg = rangeMsg("connection_limit", *lB.ConnLimit, -1, 2147483647)
		}
	case "pools":
		keys, msg = readLBBody(r, k.key, poolUpdateKeys, &pB)
		if msg == "" && pB.LBAlgorithm != nil {
			msg = oneOf("lb_algorithm", *pB.LBAlgorithm, lbAlgorithms...)
		}
	case "healthmonitors":
		keys, msg = readLBBody(r, k.key, monitorUpdateKeys, &hmB)
		if msg == "" {
			msg = hmB.check()
		}
	}
	if msg != "" {
		octaviaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.lbaas
	var lb *loadBalancer
	var obj *lbObj
	var apply func() bool
	switch kind {
	case "loadbalancers":
		if x := st.lbs[id]; x != nil {
			lb, obj = x, &x.lbObj
			apply = func() bool { lbB.apply(obj); return true }
		}
	case "listeners":
		if x := st.listeners[id]; x != nil {
			lb, obj = x.lb, &x.lbObj
			apply = func() bool {
				if _, ok := keys["default_pool_id"]; ok {
					var pool *lbPool
					if lB.DefaultPoolID != nil && *lB.DefaultPoolID != "" {
						if pool = st.pools[*lB.DefaultPoolID]; pool == nil || pool.lb != x.lb {
							octaviaError(w, http.StatusNotFound, "Pool "+*lB.DefaultPoolID+" not found.")
							return false
						}
					}
					x.defaultPool = pool
				}
				if lB.ConnLimit != nil {
					x.connLimit = *lB.ConnLimit
				}
				lB.apply(obj)
				return true
			}
		}
	case "pools":
		if x := st.pools[id]; x != nil {
			lb, obj = x.lb, &x.lbObj
			apply = func() bool {
				if pB.LBAlgorithm != nil {
					x.algorithm = *pB.LBAlgorithm
				}
				pB.apply(obj)
				return true
			}
		}
	case "healthmonitors":
		if x := st.monitors[id]; x != nil {
			lb, obj = x.pool.lb, &x.lbObj
			apply = func() bool { hmB.applyMonitor(x); return true }
		}
	}
	if obj == nil {
		octaviaError(w, http.StatusNotFound, k.name+" "+id+" not found.")
		return
	}
	if !s.mutable(w, lb) || !apply() {
		return
	}
	obj.touch()
	if obj != &lb.lbObj {
		obj.prov = stPendingUpdate
	}
	s.pend(lb, stPendingUpdate, func() []*proxy {
		if obj.prov == stPendingUpdate {
			settle(obj)
		}
		return nil
	})
	writeJSON(w, http.StatusOK, map[string]any{k.key: s.docOf(kind, id)})
}

// dropListener removes a listener; its socket is returned to close.
// Call with s.mu held.
func (s *Sim) dropListener(l *lbListener) *proxy {
	delete(s.lbaas.listeners, l.id)
	return l.proxy
}

// dropPool removes a pool with its members and health monitor. Call with
// s.mu held.
func (s *Sim) dropPool(p *lbPool) {
	for _, l := range s.lbListeners(p.lb) {
		if l.defaultPool == p {
			l.defaultPool = nil
		}
	}
	if p.monitor != nil {
		s.dropMonitor(p.monitor)
	}
	for _, m := range slices.Clone(p.members) {
		removeMember(m)
	}
	delete(s.lbaas.pools, p.id)
}

// dropMonitor removes a health monitor and stops its probes; the pool's
// members are NO_MONITOR again. Call with s.mu held.
func (s *Sim) dropMonitor(hm *healthMonitor) {
	delete(s.lbaas.monitors, hm.id)
	if hm.stop != nil {
		close(hm.stop)
		hm.stop = nil
	}
	if hm.pool.monitor == hm {
		hm.pool.monitor = nil
		for _, m := range hm.pool.members {
			m.rise, m.fall = 0, 0
			m.oper = memberStartOper(m)
		}
	}
}

func (s *Sim) deleteLBObject(w http.ResponseWriter, r *http.Request, kind, id string) {
	k := lbKinds[kind]
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.lbaas
	notFound := func() { octaviaError(w, http.StatusNotFound, k.name+" "+id+" not found.") }
	switch kind {
	case "loadbalancers":
		lb := st.lbs[id]
		if lb == nil {
			notFound()
			return
		}
		if !s.mutable(w, lb) {
			return
		}
		ls, ps := s.lbListeners(lb), s.lbPools(lb)
		cascade, _ := strconv.ParseBool(r.URL.Query().Get("cascade"))
		if !cascade && len(ls)+len(ps) > 0 {
			octaviaError(w, http.StatusBadRequest, "Cannot delete Load Balancer "+id+" - it has children")
			return
		}
		for _, l := range ls {
			l.prov = stPendingDelete
		}
		for _, p := range ps {
			p.prov = stPendingDelete
			if p.monitor != nil {
				p.monitor.prov = stPendingDelete
			}
			for _, m := range p.members {
				m.prov = stPendingDelete
			}
		}
		s.pend(lb, stPendingDelete, func() []*proxy {
			var stops []*proxy
			for _, l := range ls {
				stops = append(stops, s.dropListener(l))
			}
			for _, p := range ps {
				s.dropPool(p)
			}
			lb.gone = true
			delete(st.lbs, lb.id)
			return stops
		})
	case "listeners":
		l := st.listeners[id]
		if l == nil {
			notFound()
			return
		}
		if !s.mutable(w, l.lb) {
			return
		}
		l.prov = stPendingDelete
		s.pend(l.lb, stPendingUpdate, func() []*proxy { return []*proxy{s.dropListener(l)} })
	case "pools":
		p := st.pools[id]
		if p == nil {
			notFound()
			return
		}
		if !s.mutable(w, p.lb) {
			return
		}
		p.prov = stPendingDelete
		s.pend(p.lb, stPendingUpdate, func() []*proxy { s.dropPool(p); return nil })
	case "healthmonitors":
		hm := st.monitors[id]
		if hm == nil {
			notFound()
			return
		}
		if !s.mutable(w, hm.pool.lb) {
			return
		}
		hm.prov = stPendingDelete
		s.pend(hm.pool.lb, stPendingUpdate, func() []*proxy {
			if st.monitors[hm.id] == hm {
				s.dropMonitor(hm)
			}
			return nil
		})
	}
	w.WriteHeader(http.StatusNoContent)
}

// allProxies are every socket the simulator forwards on, for Close. Call
// with s.mu held.
func (s *Sim) allProxies() []*proxy {
	var out []*proxy
	for _, f := range s.fips {
		out = append(out, f.proxy)
	}
	for _, l := range s.lbaas.listeners {
		out = append(out, l.proxy)
	}
	return out
}
