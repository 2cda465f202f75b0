package sim

import (
	"maps"
	"net/http"
	"slices"

	"github.com/google/uuid"
)

// securityGroupID is a security group's ID: derived from its name, as the
// ports of servers show it.
func securityGroupID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("security-group:"+name)).String()
}

// listSecurityGroups answers GET /v2.0/security-groups, filtered as
// Neutron filters (by id, name, ...). Rules are left out: nothing Phoenix
// does reads them.
func (s *Sim) listSecurityGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := slices.Sorted(maps.Keys(s.secGroups))
	s.mu.Unlock()
	list := []any{}
	for _, n := range names {
		doc := map[string]any{
			"id": securityGroupID(n), "name": n, "description": "", "tenant_id": s.projectID, "project_id": s.projectID,
			"security_group_rules": []any{}, "stateful": true, "shared": false, "tags": []string{},
			"revision_number": 1, "created_at": networkEpoch, "updated_at": networkEpoch,
		}
		if matchQuery(doc, r.URL.Query()) {
			list = append(list, doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"security_groups": list})
}
