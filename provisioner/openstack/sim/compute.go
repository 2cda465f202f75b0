package sim

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

const novaTime = "2006-01-02T15:04:05Z"

// novaMicroTime is how Nova writes launched_at and terminated_at.
const novaMicroTime = "2006-01-02T15:04:05.000000"

type microversion struct{ major, minor int }

func (v microversion) atLeast(minor int) bool { return v.major > 2 || v.major == 2 && v.minor >= minor }

func (v microversion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func (v microversion) after(o microversion) bool {
	return v.major > o.major || v.major == o.major && v.minor > o.minor
}

func parseMicroversion(s string) (microversion, error) {
	major, minor, ok := strings.Cut(strings.TrimSpace(s), ".")
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil || a < 0 || b < 0 {
		return microversion{}, fmt.Errorf("invalid microversion %q", s)
	}
	return microversion{a, b}, nil
}

// requestedMicroversion reads the compute microversion a request asks
// for: OpenStack-API-Version ("compute 2.52", possibly in a comma list)
// first, then the legacy X-OpenStack-Nova-API-Version, as Nova does.
func requestedMicroversion(r *http.Request) string {
	for _, h := range r.Header.Values("OpenStack-API-Version") {
		for part := range strings.SplitSeq(h, ",") {
			svc, v, ok := strings.Cut(strings.TrimSpace(part), " ")
			if ok && strings.EqualFold(svc, "compute") {
				return strings.TrimSpace(v)
			}
		}
	}
	return strings.TrimSpace(r.Header.Get("X-OpenStack-Nova-API-Version"))
}

// negotiate returns the microversion to answer with, or false after
// answering the error itself: 400 for a malformed version, 406 for one out
// of range.
func (s *Sim) negotiate(w http.ResponseWriter, r *http.Request) (microversion, bool) {
	v := microversion{2, 1}
	switch asked := requestedMicroversion(r); {
	case asked == "":
	case strings.EqualFold(asked, "latest"):
		v = s.maxMV
	default:
		var err error
		if v, err = parseMicroversion(asked); err != nil {
			novaError(w, http.StatusBadRequest, fmt.Sprintf("API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", asked))
			return v, false
		}
		if v.major != 2 || v.minor < 1 || v.after(s.maxMV) {
			novaError(w, http.StatusNotAcceptable, fmt.Sprintf("Version %s is not supported by the API. Minimum is 2.1 and maximum is %s.", asked, s.maxMV))
			return v, false
		}
	}
	h := w.Header()
	h.Set("OpenStack-API-Version", "compute "+v.String())
	h.Set("X-OpenStack-Nova-API-Version", v.String())
	h.Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	return v, true
}

func (s *Sim) computeVersion(id string) map[string]any {
	doc := map[string]any{
		"id": "v2.1", "status": "CURRENT", "version": s.maxMV.String(), "min_version": "2.1",
		"updated": "2013-07-23T11:33:21Z",
		"links":   []any{map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2.1/"}},
	}
	if id == "v2.0" {
		doc = map[string]any{
			"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
			"updated": "2011-01-21T11:33:21Z",
			"links":   []any{map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2/"}},
		}
	}
	return doc
}

// serveComputeVersion answers GET /compute/v2.1[/]: the document
// gophercloud's utils.GetSupportedMicroversions reads.
func (s *Sim) serveComputeVersion(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	doc := s.computeVersion("v2.1")
	doc["media-types"] = []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}}
	writeJSON(w, http.StatusOK, map[string]any{"version": doc})
}

// serveComputeRoot answers below /compute but outside /compute/v2.1: the
// versions list at the root, nothing else.
func (s *Sim) serveComputeRoot(w http.ResponseWriter, r *http.Request, sub string) {
	if (sub == "" || sub == "/") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []any{s.computeVersion("v2.0"), s.computeVersion("v2.1")}})
		return
	}
	novaError(w, http.StatusNotFound, "The resource could not be found.")
}

var (
	reServer         = regexp.MustCompile(`^/servers/([^/]+)$`)
	reServerAction   = regexp.MustCompile(`^/servers/([^/]+)/action$`)
	reServerMetadata = regexp.MustCompile(`^/servers/([^/]+)/metadata$`)
	reServerMetaKey  = regexp.MustCompile(`^/servers/([^/]+)/metadata/([^/]+)$`)
	reServerTags     = regexp.MustCompile(`^/servers/([^/]+)/tags$`)
	reServerTag      = regexp.MustCompile(`^/servers/([^/]+)/tags/([^/]+)$`)
	reFlavor         = regexp.MustCompile(`^/flavors/([^/]+)$`)
	reServerGroup    = regexp.MustCompile(`^/os-server-groups/([^/]+)$`)
)

// serveCompute routes the authenticated Nova API below /compute/v2.1.
func (s *Sim) serveCompute(w http.ResponseWriter, r *http.Request, sub string) {
	v, ok := s.negotiate(w, r)
	if !ok {
		return
	}
	sub = strings.TrimSuffix(sub, "/")
	m := r.Method
	get := m == http.MethodGet || m == http.MethodHead
	notAllowed := func() {
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
	}
	var p []string
	match := func(re *regexp.Regexp) bool {
		p = re.FindStringSubmatch(sub)
		return p != nil
	}
	switch {
	case sub == "/servers":
		switch {
		case m == http.MethodPost:
			s.createServer(w, r, v)
		case get:
			s.listServers(w, r, v, false)
		default:
			notAllowed()
		}
	case sub == "/servers/detail":
		if !get {
			notAllowed()
			return
		}
		s.listServers(w, r, v, true)
	case match(reServer):
		switch m {
		case http.MethodGet, http.MethodHead:
			s.showServer(w, v, p[1])
		case http.MethodPut:
			s.updateServer(w, r, v, p[1])
		case http.MethodDelete:
			s.deleteServer(w, p[1])
		default:
			notAllowed()
		}
	case match(reServerAction):
		if m != http.MethodPost {
			notAllowed()
			return
		}
		s.serverAction(w, r, v, p[1])
	case s.serveVolumeAttachments(w, r, sub):
	case match(reServerMetadata):
		s.serverMetadata(w, r, p[1])
	case match(reServerMetaKey):
		s.serverMetadatum(w, r, p[1], unescape(p[2]))
	case v.atLeast(26) && match(reServerTags):
		s.serverTags(w, r, p[1])
	case v.atLeast(26) && match(reServerTag):
		s.serverTag(w, r, p[1], unescape(p[2]))
	case sub == "/flavors" || sub == "/flavors/detail":
		if !get {
			notAllowed()
			return
		}
		s.listFlavors(w, v, sub == "/flavors/detail")
	case match(reFlavor):
		if !get {
			notAllowed()
			return
		}
		s.showFlavor(w, v, p[1])
	case sub == "/os-keypairs":
		if !get {
			notAllowed()
			return
		}
		s.listKeypairs(w, v)
	case sub == "/os-server-groups":
		switch {
		case get:
			s.listServerGroups(w, v)
		case m == http.MethodPost:
			s.createServerGroup(w, r, v)
		default:
			notAllowed()
		}
	case match(reServerGroup):
		if !get {
			notAllowed()
			return
		}
		s.showServerGroup(w, v, p[1])
	case sub == "/limits":
		if !get {
			notAllowed()
			return
		}
		s.limits(w)
	default:
		novaError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

func (s *Sim) flavorJSON(f Flavor, v microversion, detail bool) map[string]any {
	out := map[string]any{"id": f.ID, "name": f.Name, "links": []any{
		map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2.1/flavors/" + f.ID},
		map[string]any{"rel": "bookmark", "href": s.endpoint + "/compute/flavors/" + f.ID},
	}}
	if v.atLeast(55) {
		out["description"] = nil
	}
	if detail {
		out["ram"], out["vcpus"], out["disk"] = f.RAM, f.VCPUs, f.Disk
		out["OS-FLV-EXT-DATA:ephemeral"], out["OS-FLV-DISABLED:disabled"] = 0, false
		out["os-flavor-access:is_public"] = true
		if v.atLeast(75) {
			out["swap"] = 0
		} else {
			out["swap"], out["rxtx_factor"] = "", 1.0
		}
		if v.atLeast(61) {
			out["extra_specs"] = map[string]any{}
		}
	}
	return out
}

func (s *Sim) listFlavors(w http.ResponseWriter, v microversion, detail bool) {
	s.mu.Lock()
	list := make([]any, 0, len(s.flavors))
	for _, f := range s.flavors {
		list = append(list, s.flavorJSON(f, v, detail))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"flavors": list})
}

func (s *Sim) showFlavor(w http.ResponseWriter, v microversion, id string) {
	s.mu.Lock()
	f, ok := s.flavor(id)
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, fmt.Sprintf("Flavor %s could not be found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavor": s.flavorJSON(f, v, true)})
}

func (s *Sim) listKeypairs(w http.ResponseWriter, v microversion) {
	s.mu.Lock()
	names := slices.Sorted(maps.Keys(s.keypairs))
	s.mu.Unlock()
	list := make([]any, 0, len(names))
	for _, name := range names {
		kp := map[string]any{"name": name, "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIsimulated " + name,
			"fingerprint": "a1:b2:c3:d4:e5:f6:07:18:29:3a:4b:5c:6d:7e:8f:90"}
		if v.atLeast(2) {
			kp["type"] = "ssh"
		}
		list = append(list, map[string]any{"keypair": kp})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypairs": list})
}

// serverGroupJSON renders a server group. Call with s.mu held.
func (s *Sim) serverGroupJSON(g serverGroup, v microversion) map[string]any {
	members := []string{}
	for _, srv := range s.order {
		if srv.group == g.ID {
			members = append(members, srv.id)
		}
	}
	out := map[string]any{"id": g.ID, "name": g.Name, "members": members}
	if v.atLeast(13) {
		out["project_id"], out["user_id"] = s.projectID, s.userID
	}
	if v.atLeast(64) {
		out["policy"], out["rules"] = g.Policy, map[string]any{}
	} else {
		out["policies"], out["metadata"] = []string{g.Policy}, map[string]any{}
	}
	return out
}

func (s *Sim) listServerGroups(w http.ResponseWriter, v microversion) {
	s.mu.Lock()
	list := make([]any, 0, len(s.srvGroups))
	for _, g := range s.srvGroups {
		list = append(list, s.serverGroupJSON(g, v))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"server_groups": list})
}

func (s *Sim) showServerGroup(w http.ResponseWriter, v microversion, id string) {
	s.mu.Lock()
	g, ok := s.serverGroup(id)
	var body map[string]any
	if ok {
		body = s.serverGroupJSON(g, v)
	}
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, fmt.Sprintf("Instance group %s could not be found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server_group": body})
}

var groupPolicies = []string{"affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"}

func (s *Sim) createServerGroup(w http.ResponseWriter, r *http.Request, v microversion) {
	var body struct {
		ServerGroup *struct {
			Name     string   `json:"name"`
			Policy   string   `json:"policy"`
			Policies []string `json:"policies"`
		} `json:"server_group"`
	}
	if err := decodeJSON(r, &body); err != nil || body.ServerGroup == nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server_group. 'server_group' is a required property")
		return
	}
	g := body.ServerGroup
	policy := g.Policy
	if !v.atLeast(64) {
		if len(g.Policies) != 1 {
			novaError(w, http.StatusBadRequest, "Invalid input for field/attribute policies. Expected exactly one policy.")
			return
		}
		policy = g.Policies[0]
	}
	if msg := validName("name", g.Name); msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	if !slices.Contains(groupPolicies, policy) {
		novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute policy. Value: %s. '%s' is not one of %s", policy, policy, strings.Join(groupPolicies, ", ")))
		return
	}
	id := s.AddServerGroup(g.Name, policy)
	s.mu.Lock()
	sg, _ := s.serverGroup(id)
	out := s.serverGroupJSON(sg, v)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"server_group": out})
}

func (s *Sim) limits(w http.ResponseWriter) {
	s.mu.Lock()
	q, used := s.quota.Instances, len(s.servers)
	s.mu.Unlock()
	if q < 0 {
		q = -1
	}
	writeJSON(w, http.StatusOK, map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": map[string]any{
		"maxTotalInstances": q, "totalInstancesUsed": used,
		"maxTotalCores": -1, "totalCoresUsed": 0, "maxTotalRAMSize": -1, "totalRAMUsed": 0,
		"maxServerMeta": maxMetadataItems, "maxTotalKeypairs": 100,
		"maxServerGroups": 10, "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0,
	}}})
}
