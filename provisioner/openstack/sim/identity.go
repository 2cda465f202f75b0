package sim

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"time"
)

// keystoneTime is the format of Keystone's expires_at and issued_at.
const keystoneTime = "2006-01-02T15:04:05.000000Z"

type token struct {
	issued, expires time.Time
	scoped          bool
	methods         []string
	auditID         string
	appCred         *ApplicationCredential // the one it was issued for, if any
}

func (s *Sim) serveIdentity(w http.ResponseWriter, r *http.Request, sub string) {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case (sub == "" || sub == "/") && get:
		// Keystone's root lists its versions, doubly enveloped, with 300.
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{s.identityVersion()}}})
	case (sub == "/v3" || sub == "/v3/") && get:
		writeJSON(w, http.StatusOK, map[string]any{"version": s.identityVersion()})
	case sub == "/v3/auth/tokens" && r.Method == http.MethodPost:
		s.issueToken(w, r)
	case sub == "/v3/auth/tokens" && (get || r.Method == http.MethodDelete):
		s.checkToken(w, r)
	case sub == "/v3/auth/tokens":
		writeJSON(w, http.StatusMethodNotAllowed, keystoneErrorBody(http.StatusMethodNotAllowed, "The method is not allowed for the requested URL."))
	default:
		writeJSON(w, http.StatusNotFound, keystoneErrorBody(http.StatusNotFound, "The resource could not be found."))
	}
}

func (s *Sim) identityVersion() map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []any{map[string]any{"rel": "self", "href": s.endpoint + "/identity/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

type idRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
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
					Domain   idRef  `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			Token struct {
				ID string `json:"id"`
			} `json:"token"`
			ApplicationCredential struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Secret string `json:"secret"`
				User   struct {
					ID     string `json:"id"`
					Name   string `json:"name"`
					Domain idRef  `json:"domain"`
				} `json:"user"`
			} `json:"application_credential"`
		} `json:"identity"`
		Scope *struct {
			Project *struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Domain idRef  `json:"domain"`
			} `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

// domainMatches says whether a reference by ID or by name is the
// simulator's one domain.
func (s *Sim) domainMatches(d idRef) bool {
	return d.ID != "" && d.ID == s.domainID || d.ID == "" && d.Name != "" && d.Name == s.opts.DomainName
}

func (s *Sim) issueToken(w http.ResponseWriter, r *http.Request) {
	unauthorized := func() {
		writeJSON(w, http.StatusUnauthorized, keystoneErrorBody(http.StatusUnauthorized, "The request you have made requires authentication."))
	}
	var req authRequest
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, keystoneErrorBody(http.StatusBadRequest, "Malformed request body: "+err.Error()))
		return
	}
	o := s.opts
	id := req.Auth.Identity
	var methods []string
	var appCred *ApplicationCredential
	for _, m := range id.Methods {
		switch m {
		case "password":
			u := id.Password.User
			byID := u.ID != "" && u.ID == s.userID
			byName := u.ID == "" && u.Name == o.Username && s.domainMatches(u.Domain)
			if !(byID || byName) || u.Password != o.Password {
				unauthorized()
				return
			}
		case "application_credential":
			// Keystone scopes such a token to the credential's project
			// itself and refuses a scope asked for beside it.
			ac, ok := s.applicationCredential(id.ApplicationCredential.ID, id.ApplicationCredential.Name,
				id.ApplicationCredential.User.ID, id.ApplicationCredential.User.Name, id.ApplicationCredential.User.Domain)
			if !ok || id.ApplicationCredential.Secret != ac.Secret {
				unauthorized()
				return
			}
			if req.Auth.Scope != nil {
				writeJSON(w, http.StatusUnauthorized, keystoneErrorBody(http.StatusUnauthorized, "Application credentials cannot request a scope."))
				return
			}
			appCred = &ac
		case "token":
			s.mu.Lock()
			t, ok := s.tokens[id.Token.ID]
			valid := ok && time.Now().Before(t.expires)
			s.mu.Unlock()
			if !valid {
				unauthorized()
				return
			}
		default:
			unauthorized()
			return
		}
		methods = append(methods, m)
	}
	if len(methods) == 0 {
		unauthorized()
		return
	}
	scoped := appCred != nil
	if sc := req.Auth.Scope; sc != nil {
		p := sc.Project
		if p == nil {
			unauthorized() // domain and system scopes: this user has no role there
			return
		}
		scoped = p.ID != "" && p.ID == s.projectID || p.ID == "" && p.Name == o.ProjectName && s.domainMatches(p.Domain)
		if !scoped {
			unauthorized()
			return
		}
	}

	b := make([]byte, 32)
	_, _ = rand.Read(b)
	now := time.Now().UTC()
	t := &token{issued: now, expires: now.Add(o.TokenTTL), scoped: scoped, methods: methods,
		auditID: hex.EncodeToString(b[:8]), appCred: appCred}
	tokenID := "gAAAAA" + hex.EncodeToString(b[8:])
	s.mu.Lock()
	s.tokens[tokenID] = t
	s.mu.Unlock()

	w.Header().Set("X-Subject-Token", tokenID)
	writeJSON(w, http.StatusCreated, map[string]any{"token": s.tokenBody(t)})
}

// checkToken answers GET/HEAD (validate) and DELETE (revoke) of the token
// in X-Subject-Token, for a caller holding a valid X-Auth-Token.
func (s *Sim) checkToken(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeJSON(w, http.StatusUnauthorized, keystoneErrorBody(http.StatusUnauthorized, "The request you have made requires authentication."))
		return
	}
	subject := r.Header.Get("X-Subject-Token")
	s.mu.Lock()
	t, ok := s.tokens[subject]
	ok = ok && time.Now().Before(t.expires)
	if ok && r.Method == http.MethodDelete {
		delete(s.tokens, subject)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeJSON(w, http.StatusNotFound, keystoneErrorBody(http.StatusNotFound, "Could not find token: "+subject+"."))
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("X-Subject-Token", subject)
		writeJSON(w, http.StatusOK, map[string]any{"token": s.tokenBody(t)})
	}
}

func (s *Sim) tokenBody(t *token) map[string]any {
	o := s.opts
	domain := map[string]any{"id": s.domainID, "name": o.DomainName}
	body := map[string]any{
		"methods":    t.methods,
		"user":       map[string]any{"id": s.userID, "name": o.Username, "domain": domain, "password_expires_at": nil},
		"expires_at": t.expires.Format(keystoneTime),
		"issued_at":  t.issued.Format(keystoneTime),
		"audit_ids":  []string{t.auditID},
	}
	if t.scoped {
		body["project"] = map[string]any{"id": s.projectID, "name": o.ProjectName, "domain": domain}
		body["is_domain"] = false
		body["roles"] = []any{
			map[string]any{"id": stableID("role:member"), "name": "member"},
			map[string]any{"id": stableID("role:reader"), "name": "reader"},
		}
		body["catalog"] = s.catalog()
	}
	if t.appCred != nil {
		body["application_credential"] = map[string]any{"id": t.appCred.ID, "name": t.appCred.Name, "restricted": true}
	}
	return body
}

// ApplicationCredential is an application credential of the simulator's
// one user, for its one project.
type ApplicationCredential struct {
	ID, Name, Secret string
}

// AddApplicationCredential creates an application credential named name,
// as `openstack application credential create NAME` does, and returns it
// with its secret. It is the primary Keystone's, whichever region is asked.
func (s *Sim) AddApplicationCredential(name string) ApplicationCredential {
	ac := ApplicationCredential{ID: hexID(), Name: name, Secret: hexID() + hexID()}
	k := s.keystone()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.appCreds == nil {
		k.appCreds = map[string]ApplicationCredential{}
	}
	k.appCreds[ac.ID] = ac
	return ac
}

// applicationCredential finds a credential by ID, or by name and its user
// (by ID, or by name and domain), as Keystone does.
func (s *Sim) applicationCredential(id, name, userID, userName string, domain idRef) (ApplicationCredential, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "" {
		ac, ok := s.appCreds[id]
		return ac, ok
	}
	if userID != s.userID && !(userID == "" && userName == s.opts.Username && s.domainMatches(domain)) {
		return ApplicationCredential{}, false
	}
	for _, ac := range s.appCreds {
		if ac.Name == name && name != "" {
			return ac, true
		}
	}
	return ApplicationCredential{}, false
}

// UserID, ProjectID and DomainID are the Keystone IDs of the simulator's
// one user, project and domain: what an openrc by IDs names.
func (s *Sim) UserID() string    { return s.userID }
func (s *Sim) ProjectID() string { return s.projectID }
func (s *Sim) DomainID() string  { return s.domainID }

// catalog lists every service at public, internal and admin endpoints in
// every region, each pointing at its region's listener. Keystone is the
// primary's alone, listed in every region as shared deployments list it.
func (s *Sim) catalog() []any {
	regions := append([]*Sim{s}, s.regions...)
	entry := func(typ, name string, url func(r *Sim) string) map[string]any {
		var eps []any
		for _, r := range regions {
			for _, iface := range []string{"public", "internal", "admin"} {
				key := "endpoint:" + typ + ":" + iface
				if r != s {
					key = "endpoint:" + r.opts.Region + ":" + typ + ":" + iface
				}
				eps = append(eps, map[string]any{
					"id": stableID(key), "interface": iface,
					"region": r.opts.Region, "region_id": r.opts.Region, "url": url(r),
				})
			}
		}
		return map[string]any{"type": typ, "name": name, "id": stableID("service:" + typ), "endpoints": eps}
	}
	out := []any{
		entry("identity", "keystone", func(*Sim) string { return s.endpoint + "/identity" }),
		entry("compute", "nova", func(r *Sim) string { return r.endpoint + "/compute/v2.1" }),
		entry("image", "glance", func(r *Sim) string { return r.endpoint + "/image" }),
		entry("network", "neutron", func(r *Sim) string { return r.endpoint + "/networking" }),
	}
	if !s.opts.NoLoadBalancerService {
		out = append(out, entry("load-balancer", "octavia", func(r *Sim) string { return r.endpoint + "/load-balancer" }))
	}
	if !s.opts.NoVolumeService {
		out = append(out, entry("volumev3", "cinderv3", func(r *Sim) string { return r.endpoint + "/volume/v3/" + s.projectID }))
	}
	return out
}

// stableID is a Keystone-style ID (32 hex digits) derived from a name.
func stableID(name string) string {
	sum := sha1.Sum([]byte(name))
	return hex.EncodeToString(sum[:16])
}
