package sim

import (
	"net/http"
	"regexp"
)

var reNetwork = regexp.MustCompile(`^/v2\.0/networks/([^/]+)$`)

func (s *Sim) serveNetwork(w http.ResponseWriter, r *http.Request, sub string) {
	if r.Method != http.MethodGet {
		neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "method not allowed")
		return
	}
	switch {
	case sub == "" || sub == "/":
		// Neutron's version document: clients discover v2.0 here.
		writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{"id": "v2.0", "status": "CURRENT",
			"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/networking/v2.0/"}}}}})
	case sub == "/v2.0/networks":
		q := r.URL.Query()
		s.mu.Lock()
		list := []any{}
		for _, n := range s.networks {
			if v := q.Get("name"); v != "" && n.Name != v {
				continue
			}
			if v := q.Get("id"); v != "" && n.ID != v {
				continue
			}
			list = append(list, s.networkJSON(n))
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"networks": list})
	case reNetwork.MatchString(sub):
		id := reNetwork.FindStringSubmatch(sub)[1]
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, n := range s.networks {
			if n.ID == id {
				writeJSON(w, http.StatusOK, map[string]any{"network": s.networkJSON(n)})
				return
			}
		}
		neutronError(w, http.StatusNotFound, "NetworkNotFound", "Network "+id+" could not be found.")
	default:
		neutronError(w, http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
	}
}

func (s *Sim) networkJSON(n Network) map[string]any {
	return map[string]any{
		"id": n.ID, "name": n.Name, "status": "ACTIVE", "admin_state_up": true, "shared": false,
		"subnets": []string{}, "tenant_id": s.projectID, "project_id": s.projectID, "mtu": 1450,
		"router:external": false, "port_security_enabled": true, "tags": []string{},
		"availability_zones": []string{"nova"}, "description": "", "revision_number": 1,
	}
}

func neutronError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
}
