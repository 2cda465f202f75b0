package sim

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var reNetwork = regexp.MustCompile(`^/v2\.0/networks/([^/]+)$`)

// networkEpoch is when every simulated network was created.
var networkEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Format(novaTime)

// serveNetworkVersions answers the Neutron root: the versions list.
func (s *Sim) serveNetworkVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{"id": "v2.0", "status": "CURRENT",
		"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/networking/v2.0/"}}}}})
}

func (s *Sim) serveNetwork(w http.ResponseWriter, r *http.Request, sub string) {
	sub = strings.TrimSuffix(sub, ".json")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case sub == "/v2.0/networks":
		if !get {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		s.listNetworks(w, r)
	case reNetwork.MatchString(sub):
		if !get {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		id := reNetwork.FindStringSubmatch(sub)[1]
		s.mu.Lock()
		n, ok := s.network(id)
		var doc map[string]any
		if ok {
			doc = s.networkJSON(n)
		}
		s.mu.Unlock()
		if !ok {
			neutronError(w, http.StatusNotFound, "NetworkNotFound", "Network "+id+" could not be found.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"network": doc})
	case sub == "/v2.0/subnets" || reSubnet.MatchString(sub):
		if !get {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		s.serveSubnets(w, r, sub)
	case sub == "/v2.0/ports" || rePort.MatchString(sub):
		if !get {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		s.servePorts(w, r, sub)
	case sub == "/v2.0/floatingips":
		switch {
		case get:
			s.listFloatingIPs(w, r)
		case r.Method == http.MethodPost:
			s.createFloatingIP(w, r)
		default:
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
		}
	case sub == "/v2.0/security-groups":
		if !get {
			neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
			return
		}
		s.listSecurityGroups(w, r)
	case reFloatingIP.MatchString(sub):
		s.serveFloatingIP(w, r, reFloatingIP.FindStringSubmatch(sub)[1])
	default:
		neutronError(w, http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
	}
}

// listNetworks answers GET /v2.0/networks, filtered by any attribute
// Neutron shows (name, id, status, shared, ...), each repeatable (any
// value matches).
func (s *Sim) listNetworks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	nets := slices.Clone(s.networks)
	s.mu.Unlock()
	list := []any{}
	for _, n := range nets {
		s.mu.Lock()
		doc := s.networkJSON(n)
		s.mu.Unlock()
		if matchQuery(doc, q) {
			list = append(list, doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"networks": list})
}

// matchQuery says whether a resource's JSON passes Neutron list filters:
// every filter on an attribute it shows must match (any of the filter's
// values); filters on attributes it lacks are ignored, as Neutron does.
func matchQuery(doc map[string]any, q url.Values) bool {
	for k, vals := range q {
		switch k {
		case "fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir":
			continue
		}
		v, ok := doc[k]
		if !ok {
			continue // Neutron ignores filters on attributes it lacks
		}
		var got string
		switch x := v.(type) {
		case string:
			got = x
		case bool:
			got = strconv.FormatBool(x)
		case int:
			got = strconv.Itoa(x)
		case nil:
			got = "" // a null attribute matches no value but the empty one
		default:
			continue
		}
		if !slices.Contains(vals, got) {
			return false
		}
	}
	return true
}

// networkJSON is a network as Neutron shows it. Call with s.mu held.
func (s *Sim) networkJSON(n Network) map[string]any {
	subnets := []string{}
	for _, sn := range s.subnets {
		if sn.NetworkID == n.ID {
			subnets = append(subnets, sn.ID)
		}
	}
	return map[string]any{
		"id": n.ID, "name": n.Name, "status": "ACTIVE", "admin_state_up": true, "shared": false,
		"subnets": subnets, "tenant_id": s.projectID, "project_id": s.projectID, "mtu": 1442,
		"router:external": n.External, "port_security_enabled": true, "tags": []string{},
		"availability_zones": []string{"nova"}, "availability_zone_hints": []string{},
		"ipv4_address_scope": nil, "ipv6_address_scope": nil, "l2_adjacency": true,
		"description": "", "revision_number": 1, "created_at": networkEpoch, "updated_at": networkEpoch,
	}
}

func neutronError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
}
