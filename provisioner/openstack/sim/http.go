package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Request is one API request the simulator received.
type Request struct {
	// Time is when it arrived.
	Time time.Time
	// Service is "identity", "compute", "image", "network",
	// "load-balancer" or "block-storage"; "" for a path no service serves.
	Service string
	Method  string
	// Path is the full URL path; Query the raw query string.
	Path, Query string
	// Status is what the client got: 0 while the request is in progress
	// and for one never answered (Hang, CommitThenHang).
	Status int
	// Microversion is the compute (or, for block-storage, volume)
	// microversion the request asked for in its headers ("" when none,
	// which means 2.1, or 3.0 for volumes).
	Microversion string
	// Faulted says an injected fault hit the request.
	Faulted bool
	// UserAgent is the request's User-Agent header: which Phoenix replica
	// sent it, when several share the groups.
	UserAgent string
}

// Requests returns every API request received since the start or the last
// ResetRequests, in arrival order.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
	}
	return out
}

// InFlight is how many API requests the simulator is handling at this
// moment, a held (Hang) one included until its client goes away. A test
// that kills a client waits for it to reach zero: whatever the dead
// client's requests did has then happened.
func (s *Sim) InFlight() int { return int(s.inflight.Load()) }

// ResetRequests forgets the request log.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// services maps URL prefixes to services; the first match wins.
var services = []struct{ prefix, name string }{
	{"/identity", "identity"},
	{"/compute/v2.1", "compute"},
	{"/compute", "compute"}, // Nova's root: the versions list
	{"/image", "image"},
	{"/networking", "network"},
	{"/load-balancer", "load-balancer"},
	{"/volume", "block-storage"},
}

func splitService(path string) (service, prefix, sub string) {
	for _, sv := range services {
		if rest, ok := strings.CutPrefix(path, sv.prefix); ok && (rest == "" || rest[0] == '/') {
			return sv.name, sv.prefix, rest
		}
	}
	return "", "", path
}

func (s *Sim) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	service, prefix, sub := splitService(r.URL.Path)
	if service == "load-balancer" {
		// Octavia answers under /v2.0 and /v2 alike; faults and routes
		// see /v2.
		sub = lbPath(sub)
	}
	rec := &Request{Time: time.Now(), Service: service, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, UserAgent: r.UserAgent()}
	switch service {
	case "compute":
		rec.Microversion = requestedMicroversion(r)
	case "block-storage":
		rec.Microversion = requestedVolumeMicroversion(r)
	}
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

	if f == nil {
		s.route(sw, r, service, prefix, sub)
		return
	}
	switch f.Action {
	case FailWith:
		s.writeFault(sw, service, sub, f)
	case Hang:
		s.hang(r)
	case CommitThenFail:
		s.route(&discardWriter{header: http.Header{}}, r, service, prefix, sub)
		s.writeFault(sw, service, sub, f)
	case CommitThenHang:
		s.route(&discardWriter{header: http.Header{}}, r, service, prefix, sub)
		s.hang(r)
	}
}

// hang holds a request unanswered until its client goes away or the
// simulator closes.
func (s *Sim) hang(r *http.Request) {
	// Once the whole body is read the HTTP server watches the connection
	// and cancels the request's context when the client hangs up.
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-s.closing:
	}
}

func (s *Sim) route(w http.ResponseWriter, r *http.Request, service, prefix, sub string) {
	switch service {
	case "":
		writeJSON(w, http.StatusNotFound, keystoneErrorBody(http.StatusNotFound, "The resource could not be found."))
		return
	case "identity":
		if s.primary != nil {
			// One Keystone: the catalog sends clients to the primary's.
			writeJSON(w, http.StatusNotFound, keystoneErrorBody(http.StatusNotFound, "The resource could not be found."))
			return
		}
		s.serveIdentity(w, r, sub)
		return
	case "compute":
		if prefix == "/compute" {
			s.serveComputeRoot(w, r, sub)
			return
		}
		if sub == "" || sub == "/" {
			// Version discovery needs no token, as on a real cloud.
			s.serveComputeVersion(w, r)
			return
		}
	case "block-storage":
		if sub == "" || sub == "/" || sub == "/v3" || sub == "/v3/" {
			s.serveVolumeVersions(w, r, sub)
			return
		}
	case "image", "network", "load-balancer":
		if sub == "" || sub == "/" {
			switch service {
			case "image":
				s.serveImageVersions(w, r)
			case "network":
				s.serveNetworkVersions(w, r)
			default:
				s.serveLBVersions(w, r)
			}
			return
		}
	}
	if !s.authorized(r) {
		// keystonemiddleware's answer, in every service.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Keystone uri=%q", s.keystone().endpoint+"/identity"))
		writeJSON(w, http.StatusUnauthorized, keystoneErrorBody(http.StatusUnauthorized, "The request you have made requires authentication."))
		return
	}
	switch service {
	case "compute":
		s.serveCompute(w, r, sub)
	case "image":
		s.serveImage(w, r, sub)
	case "network":
		s.serveNetwork(w, r, sub)
	case "load-balancer":
		s.serveLB(w, r, sub)
	case "block-storage":
		s.serveVolume(w, r, sub)
	}
}

// authorized says whether the request carries a valid, unexpired token
// of the primary's Keystone.
func (s *Sim) authorized(r *http.Request) bool {
	id := r.Header.Get("X-Auth-Token")
	if id == "" {
		return false
	}
	k := s.keystone()
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.tokens[id]
	return ok && time.Now().Before(t.expires)
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

// discardWriter swallows the real answer of a request whose fault acts
// and then answers otherwise.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// maxBody bounds request bodies: the largest legitimate one (a server
// create with 64 KiB of user data) is far smaller.
const maxBody = 1 << 20

var errEmptyBody = errors.New("empty body")

// decodeJSON reads a request's JSON body into v.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return err
	}
	if len(b) > maxBody {
		return errors.New("request body too large")
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return errEmptyBody
	}
	return json.Unmarshal(b, v)
}

// keystoneErrorBody is Keystone's (and keystonemiddleware's) error shape.
func keystoneErrorBody(status int, msg string) map[string]any {
	return map[string]any{"error": map[string]any{"code": status, "title": http.StatusText(status), "message": msg}}
}
