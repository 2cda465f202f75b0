package sim

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

const keystoneTime = "2006-01-02T15:04:05.000000Z"

func (s *Sim) serveIdentity(w http.ResponseWriter, r *http.Request, sub string) {
	switch {
	case (sub == "" || sub == "/") && r.Method == http.MethodGet:
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{s.identityVersion()}}})
	case (sub == "/v3" || sub == "/v3/") && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"version": s.identityVersion()})
	case sub == "/v3/auth/tokens" && r.Method == http.MethodPost:
		s.issueToken(w, r)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "title": "Not Found", "message": "The resource could not be found."}})
	}
}

func (s *Sim) identityVersion() map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []any{map[string]any{"rel": "self", "href": s.endpoint + "/identity/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					ID       string `json:"id"`
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Domain struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

func (s *Sim) domainMatches(id, name string) bool {
	o := s.opts
	return id == "" && name == o.DomainName ||
		name == "" && (id == strings.ToLower(o.DomainName) || id == "default" && o.DomainName == "Default")
}

func (s *Sim) issueToken(w http.ResponseWriter, r *http.Request) {
	unauthorized := func() {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
	}
	var req authRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "title": "Bad Request", "message": err.Error()}})
		return
	}
	id := req.Auth.Identity
	u := id.Password.User
	o := s.opts
	userOK := (u.ID == s.userID || u.Name == o.Username && s.domainMatches(u.Domain.ID, u.Domain.Name)) && u.Password == o.Password
	if len(id.Methods) != 1 || id.Methods[0] != "password" || !userOK {
		unauthorized()
		return
	}
	p := req.Auth.Scope.Project
	scoped := p.ID == s.projectID || p.Name == o.ProjectName && s.domainMatches(p.Domain.ID, p.Domain.Name)
	if !scoped {
		unauthorized()
		return
	}

	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := "gAAAAA" + hex.EncodeToString(b)
	now := time.Now().UTC()
	expires := now.Add(o.TokenTTL)
	s.mu.Lock()
	s.tokens[token] = expires
	s.mu.Unlock()

	domain := map[string]any{"id": "default", "name": o.DomainName}
	w.Header().Set("X-Subject-Token", token)
	writeJSON(w, http.StatusCreated, map[string]any{"token": map[string]any{
		"methods":    []string{"password"},
		"user":       map[string]any{"id": s.userID, "name": o.Username, "domain": domain, "password_expires_at": nil},
		"project":    map[string]any{"id": s.projectID, "name": o.ProjectName, "domain": domain},
		"roles":      []any{map[string]any{"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member"}, map[string]any{"id": "a0f8e35e9b4b4c1c8f3d0e2c3f3b8f7d", "name": "reader"}},
		"catalog":    s.catalog(),
		"expires_at": expires.Format(keystoneTime),
		"issued_at":  now.Format(keystoneTime),
		"audit_ids":  []string{hex.EncodeToString(b[:8])},
		"is_domain":  false,
	}})
}

func (s *Sim) catalog() []any {
	entry := func(typ, name, url string) map[string]any {
		var eps []any
		for i, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{
				"id": hex.EncodeToString([]byte(typ + iface))[:16] + string(rune('a'+i)), "interface": iface,
				"region": s.opts.Region, "region_id": s.opts.Region, "url": url,
			})
		}
		return map[string]any{"type": typ, "name": name, "id": hex.EncodeToString([]byte(name)), "endpoints": eps}
	}
	return []any{
		entry("identity", "keystone", s.endpoint+"/identity"),
		entry("compute", "nova", s.endpoint+"/compute/v2.1"),
		entry("image", "glance", s.endpoint+"/image"),
		entry("network", "neutron", s.endpoint+"/networking"),
	}
}
