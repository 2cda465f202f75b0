package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"
)

// The simulator's request decoding is what every test of Phoenix against
// it relies on: a body the real service refuses must be refused, and one
// it accepts must be read exactly. FuzzDecode holds the three decoders the
// controller exercises most — Nova's server create body, Octavia's member
// body and Nova's server list query — to these properties:
//
//   - no input panics;
//   - a refusal is a message and nothing else (no half-built request), and
//     a list query is refused only with 400 or 403;
//   - an accepted input satisfies the schema it was checked against
//     (names, UUIDs, ranges, base64, tag rules);
//   - an accepted input, written out again as a client would send it, is
//     accepted as the same request (the decoder neither drops nor invents
//     a field);
//   - through the HTTP handler (a simulator serving the request in
//     process): a create is answered 202 or a 4xx in Nova's error shape,
//     a refused create leaves no server behind, and an accepted one makes
//     exactly one server holding what the body asked for; a server list
//     is answered 200 with a list, or the 400 or 403 of its query.

// fuzzKind selects the decoder: the byte's value modulo fuzzKinds.
const (
	fuzzCreate = iota
	fuzzMember
	fuzzListQuery
	fuzzCreateHTTP
	fuzzListHTTP
	fuzzKinds
)

const fuzzImage = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
const fuzzNet = "11111111-2222-4333-8444-555555555555"
const fuzzSubnet = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

func FuzzDecode(f *testing.F) {
	create := func(v uint8, server string) {
		f.Add(uint8(fuzzCreate), v, []byte(`{"server":`+server+`}`))
	}
	create(52, `{"name":"web-1","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":[{"uuid":"`+fuzzNet+`"}],`+
		`"metadata":{"phoenix:group":"web","phoenix:rev":"abc"},"tags":["phoenix:web"],"user_data":"I2Nsb3VkLWNvbmZpZwo="}`)
	create(52, `{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":2,"networks":"auto","security_groups":[{"name":"default"}]}`)
	create(1, `{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","min_count":"1","return_reservation_id":true}`)
	create(90, `{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":"none","hostname":"h","description":null}`)
	create(42, `{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":[{"port":"p","tag":"t","fixed_ip":"10.0.0.3"}]}`)
	create(52, `{"name":" a","imageRef":"x","flavorRef":"","tags":["a/b"],"metadata":{"":"x"}}`)
	create(96, `{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":[],"key_name":"k","availability_zone":"nova"}`)
	f.Add(uint8(fuzzCreate), uint8(52), []byte(`{"server":{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":"auto"},`+
		`"os:scheduler_hints":{"group":"`+fuzzNet+`"}}`))
	f.Add(uint8(fuzzCreate), uint8(52), []byte(`[]`))
	f.Add(uint8(fuzzCreate), uint8(52), []byte(`null`))

	member := func(body string) { f.Add(uint8(fuzzMember), uint8(0), []byte(body)) }
	member(`{"address":"127.0.0.5","protocol_port":8080,"name":"web-1","tags":["phoenix:web"]}`)
	member(`{"address":"::1","protocol_port":1,"weight":0,"backup":true,"monitor_address":"","monitor_port":65535}`)
	member(`{"address":"10.0.0.1","protocol_port":65536,"subnet_id":"` + fuzzSubnet + `","admin_state_up":false}`)
	member(`{"address":"10.0.0.1","protocol_port":80,"weight":257,"tags":null,"name":null}`)
	member(`{"address":"not-an-ip","protocol_port":80,"request_sriov":false}`)
	member(`{"Address":"10.0.0.1","protocol_port":80}`)
	member(`{"address":"10.0.0.1","protocol_port":80.5}`)

	list := func(v uint8, q string) { f.Add(uint8(fuzzListQuery), v, []byte(q)) }
	list(52, "tags=phoenix%3Aweb&status=ACTIVE&status=build")
	list(52, "name=%5Eweb-&image=http://x/images/"+fuzzImage+"&flavor=1&not-tags-any=a,b")
	list(37, "status=NOPE&ip=10%5C.0")
	list(38, "status=NOPE")
	list(52, "status=deleted")
	list(52, "name=(&limit=1")
	list(25, "tags=a&tags-any=b,,c&marker=x;y")

	f.Add(uint8(fuzzCreateHTTP), uint8(52), []byte(`{"server":{"name":"web-1","imageRef":"`+fuzzImage+`","flavorRef":"1",`+
		`"networks":[{"uuid":"`+fuzzNet+`"}],"metadata":{"phoenix:group":"web"},"tags":["phoenix:web"]}}`))
	f.Add(uint8(fuzzCreateHTTP), uint8(1), []byte(`{"server":{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"m1.tiny"}}`))
	f.Add(uint8(fuzzCreateHTTP), uint8(52), []byte(`{"server":{"name":"a","imageRef":"`+fuzzImage+`","flavorRef":"1","networks":"none","return_reservation_id":true}}`))
	f.Add(uint8(fuzzCreateHTTP), uint8(52), []byte(`{"server":{"name":"a","imageRef":"`+fuzzNet+`","flavorRef":"1","networks":"auto"}}`))
	f.Add(uint8(fuzzCreateHTTP), uint8(52), []byte(` `))
	f.Add(uint8(fuzzListHTTP), uint8(52), []byte("limit=1&tags=phoenix:web"))
	f.Add(uint8(fuzzListHTTP), uint8(52), []byte("limit=-1"))
	f.Add(uint8(fuzzListHTTP), uint8(52), []byte("marker=nope&status=ACTIVE"))

	members := &Sim{subnets: []subnet{{ID: fuzzSubnet, Name: "private-subnet"}}}
	s := fuzzSim(f)
	f.Fuzz(func(t *testing.T, kind, minor uint8, data []byte) {
		v := microversion{2, int(minor) % 100}
		switch kind % fuzzKinds {
		case fuzzCreate:
			fuzzCreateBody(t, data, v)
		case fuzzMember:
			fuzzMemberBody(t, members, data)
		case fuzzListQuery:
			fuzzListFilter(t, data, v)
		case fuzzCreateHTTP:
			fuzzCreateRequest(t, s, data, microversion{2, 1 + int(minor)%96})
		case fuzzListHTTP:
			fuzzListRequest(t, s, data, microversion{2, 1 + int(minor)%96})
		}
	})
}

const fuzzToken = "fuzz-token"

// fuzzSim is a simulator whose API the fuzzer calls in process (its
// handler, no connection): a token, the image and network the seeds
// name, and two servers for lists to show. Servers never finish booting,
// so no application listens for them, and deletes end at once.
func fuzzSim(f *testing.F) *Sim {
	s, err := New(Options{BootTime: Fixed(time.Hour), DeleteTime: Fixed(0), NovaMaxLimit: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(s.Close)
	s.mu.Lock()
	s.tokens[fuzzToken] = &token{issued: time.Now(), expires: time.Now().Add(24 * time.Hour), scoped: true, methods: []string{"password"}}
	s.mu.Unlock()
	s.AddImage(Image{ID: fuzzImage, Name: "fuzz"})
	s.AddNetwork(Network{ID: fuzzNet, Name: "fuzz"})
	for _, name := range []string{"kept-1", "kept-2"} {
		body := `{"server":{"name":"` + name + `","imageRef":"` + fuzzImage + `","flavorRef":"1","networks":"none","tags":["phoenix:web"]}}`
		if w := fuzzServe(s, http.MethodPost, "/compute/v2.1/servers", microversion{2, 52}, []byte(body)); w.Code != http.StatusAccepted {
			f.Fatalf("create %s: %d %s", name, w.Code, w.Body)
		}
	}
	return s
}

// fuzzServe serves one request; target is a path and query as a URL
// holds them (the query may hold what a request line could not).
func fuzzServe(s *Sim, method, target string, v microversion, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/", bytes.NewReader(body))
	u, err := url.Parse(target)
	if err != nil {
		panic(err) // the callers' targets parse
	}
	r.URL, r.RequestURI = u, target
	r.Header.Set("X-Auth-Token", fuzzToken)
	r.Header.Set("OpenStack-API-Version", "compute "+v.String())
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	s.serveHTTP(w, r)
	s.ResetRequests() // the log would grow with every input
	return w
}

// liveIDs are the servers that exist and are not being deleted.
func liveIDs(s *Sim) map[string]bool {
	out := map[string]bool{}
	for _, srv := range s.Servers() {
		if !srv.Deleting {
			out[srv.ID] = true
		}
	}
	return out
}

// novaErrorShape checks a Nova error body: {"<kind>": {"code": status,
// "message": "..."}}.
func novaErrorShape(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	var body map[string]struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body) != 1 {
		t.Fatalf("%d answered %q: not Nova's error shape (%v)", w.Code, w.Body, err)
	}
	for _, e := range body {
		if e.Code != w.Code || e.Message == "" {
			t.Fatalf("%d answered %q: code or message wrong", w.Code, w.Body)
		}
	}
}

func fuzzCreateRequest(t *testing.T, s *Sim, data []byte, v microversion) {
	before := liveIDs(s)
	w := fuzzServe(s, http.MethodPost, "/compute/v2.1/servers", v, data)
	var added []string
	for id := range liveIDs(s) {
		if !before[id] {
			added = append(added, id)
		}
	}
	switch {
	case w.Code >= 400 && w.Code < 500:
		novaErrorShape(t, w)
		if len(added) > 0 {
			t.Fatalf("refused %q with %d but created %v", data, w.Code, added)
		}
		return
	case w.Code != http.StatusAccepted:
		t.Fatalf("create %q answered %d %s", data, w.Code, w.Body)
	}
	if len(added) != 1 {
		t.Fatalf("accepted %q and created %d servers", data, len(added))
	}
	id := added[0]
	defer func() {
		if w := fuzzServe(s, http.MethodDelete, "/compute/v2.1/servers/"+id, v, nil); w.Code != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", id, w.Code, w.Body)
		}
	}()
	c, msg := parseCreate(data, v)
	if msg != "" {
		t.Fatalf("the API accepted %q, its decoder refuses it: %s", data, msg)
	}
	srv, ok := s.Server(id)
	if !ok {
		t.Fatalf("server %s created for %q is gone", id, data)
	}
	want := c.metadata
	if want == nil {
		want = map[string]string{}
	}
	if srv.Name != c.name || srv.ImageID != c.imageRef || !maps.Equal(srv.Metadata, want) ||
		len(srv.Tags)+len(c.tags) > 0 && !slices.Equal(srv.Tags, c.tags) {
		t.Fatalf("%q made server %+v", data, srv)
	}
	var answer struct {
		Server *struct {
			ID string `json:"id"`
		} `json:"server"`
		ReservationID string `json:"reservation_id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
		t.Fatalf("202 with %q: %v", w.Body, err)
	}
	if c.reservationID != (answer.Server == nil) || answer.Server != nil && answer.Server.ID != id || c.reservationID && answer.ReservationID == "" {
		t.Fatalf("%q (reservation id asked: %v) answered %s for server %s", data, c.reservationID, w.Body, id)
	}
}

func fuzzListRequest(t *testing.T, s *Sim, data []byte, v microversion) {
	// What a client can send: the query as a URL holds it.
	u, err := url.Parse("/compute/v2.1/servers/detail?" + string(data))
	if err != nil || u.Path != "/compute/v2.1/servers/detail" {
		return
	}
	w := fuzzServe(s, http.MethodGet, u.String(), v, nil)
	switch w.Code {
	case http.StatusOK:
	case http.StatusBadRequest, http.StatusForbidden:
		novaErrorShape(t, w)
		return
	default:
		t.Fatalf("list ?%s answered %d %s", u.RawQuery, w.Code, w.Body)
	}
	var page struct {
		Servers []struct {
			ID string `json:"id"`
		} `json:"servers"`
		Links []struct {
			Rel, Href string
		} `json:"servers_links"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || page.Servers == nil {
		t.Fatalf("list ?%s answered %q (%v)", u.RawQuery, w.Body, err)
	}
	if len(page.Servers) > s.opts.NovaMaxLimit {
		t.Fatalf("list ?%s answered %d servers, more than the limit %d", u.RawQuery, len(page.Servers), s.opts.NovaMaxLimit)
	}
}

func fuzzCreateBody(t *testing.T, data []byte, v microversion) {
	c, msg := parseCreate(data, v)
	if msg != "" {
		if c != nil {
			t.Fatalf("refused %q (%s) but returned a request %+v", data, msg, c)
		}
		return
	}
	if c == nil {
		t.Fatalf("accepted %q without a request", data)
	}
	switch {
	case validName("name", c.name) != "":
		t.Fatalf("accepted name %q", c.name)
	case !isUUID(c.imageRef):
		t.Fatalf("accepted imageRef %q", c.imageRef)
	case c.flavorRef == "":
		t.Fatal("accepted an empty flavorRef")
	case len(c.tags) > maxTags:
		t.Fatalf("accepted %d tags", len(c.tags))
	case len(c.userData) > 65535:
		t.Fatalf("accepted %d bytes of user_data", len(c.userData))
	case c.networksMode != "" && len(c.networks) > 0:
		t.Fatalf("accepted networks %q and a list", c.networksMode)
	case c.description != nil && !v.atLeast(19):
		t.Fatalf("accepted a description at %s", v)
	case c.tags != nil && !v.atLeast(52):
		t.Fatalf("accepted tags at %s", v)
	}
	if _, err := base64.StdEncoding.DecodeString(c.userData); err != nil {
		t.Fatalf("accepted user_data %q: %v", c.userData, err)
	}
	for _, tag := range c.tags {
		if validTag(tag) != "" {
			t.Fatalf("accepted tag %q", tag)
		}
	}
	for k, val := range c.metadata {
		if !metadataKey.MatchString(k) || len([]rune(val)) > 255 {
			t.Fatalf("accepted metadata %q: %q", k, val)
		}
	}
	for _, n := range c.networks {
		if n.UUID == "" && n.Port == "" || v.atLeast(37) && n.UUID != "" && !isUUID(n.UUID) {
			t.Fatalf("accepted network %+v at %s", n, v)
		}
	}

	again := encodeCreate(c, v)
	c2, msg := parseCreate(again, v)
	if msg != "" {
		t.Fatalf("accepted %q as %+v; refused its re-encoding %s: %s", data, c, again, msg)
	}
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("%q read as %+v; its re-encoding %s as %+v", data, c, again, c2)
	}
}

// encodeCreate writes a create request as a client would: only the
// fields it holds.
func encodeCreate(c *createRequest, v microversion) []byte {
	server := map[string]any{"name": c.name, "imageRef": c.imageRef, "flavorRef": c.flavorRef}
	set := func(k, val string) {
		if val != "" {
			server[k] = val
		}
	}
	set("adminPass", c.adminPass)
	set("user_data", c.userData)
	set("availability_zone", c.az)
	set("key_name", c.keyName)
	set("hostname", c.hostname)
	if c.metadata != nil {
		server["metadata"] = c.metadata
	}
	if c.tags != nil {
		server["tags"] = c.tags
	}
	if c.description != nil {
		server["description"] = *c.description
	}
	if len(c.secGroups) > 0 {
		sgs := make([]map[string]string, len(c.secGroups))
		for i, n := range c.secGroups {
			sgs[i] = map[string]string{"name": n}
		}
		server["security_groups"] = sgs
	}
	switch {
	case c.networksMode != "":
		server["networks"] = c.networksMode
	case len(c.networks) > 0 || v.atLeast(37):
		nets := make([]map[string]string, 0, len(c.networks))
		for _, n := range c.networks {
			m := map[string]string{}
			for k, val := range map[string]string{"uuid": n.UUID, "port": n.Port, "fixed_ip": n.FixedIP, "tag": n.Tag} {
				if val != "" {
					m[k] = val
				}
			}
			nets = append(nets, m)
		}
		server["networks"] = nets
	}
	if c.reservationID {
		server["return_reservation_id"] = true
	}
	body := map[string]any{"server": server}
	if c.group != "" {
		body["os:scheduler_hints"] = map[string]string{"group": c.group}
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err) // strings and maps of strings always marshal
	}
	return b
}

func fuzzMemberBody(t *testing.T, s *Sim, data []byte) {
	var b memberBody
	_, msg := checkLBObject(data, "member", memberCreateKeys, &b)
	if msg == "" {
		msg = s.checkMember(&b, true)
	}
	if msg != "" {
		return
	}
	port := *b.ProtocolPort
	switch {
	case net.ParseIP(b.Address) == nil:
		t.Fatalf("accepted address %q", b.Address)
	case port < 1 || port > 65535:
		t.Fatalf("accepted protocol_port %d", port)
	case b.Weight != nil && (*b.Weight < 0 || *b.Weight > 256):
		t.Fatalf("accepted weight %d", *b.Weight)
	case b.MonitorPort != nil && (*b.MonitorPort < 1 || *b.MonitorPort > 65535):
		t.Fatalf("accepted monitor_port %d", *b.MonitorPort)
	case b.MonitorAddress != nil && *b.MonitorAddress != "" && net.ParseIP(*b.MonitorAddress) == nil:
		t.Fatalf("accepted monitor_address %q", *b.MonitorAddress)
	case b.SubnetID != "" && b.SubnetID != fuzzSubnet:
		t.Fatalf("accepted unknown subnet %q", b.SubnetID)
	}
	again, err := json.Marshal(b)
	if err != nil {
		t.Fatalf("accepted %+v but cannot marshal it: %v", b, err)
	}
	var b2 memberBody
	if _, msg := checkLBObject(again, "member", memberCreateKeys, &b2); msg != "" {
		t.Fatalf("accepted %q; refused its re-encoding %s: %s", data, again, msg)
	}
	if msg := s.checkMember(&b2, true); msg != "" {
		t.Fatalf("accepted %q; refused its re-encoding %s: %s", data, again, msg)
	}
	if !reflect.DeepEqual(b, b2) {
		t.Fatalf("%q read as %+v; its re-encoding %s as %+v", data, b, again, b2)
	}
}

func fuzzListFilter(t *testing.T, data []byte, v microversion) {
	// As r.URL.Query does: a malformed pair is dropped, the rest kept.
	q, _ := url.ParseQuery(string(data))
	f, empty, status, msg := parseListFilter(q, v)
	switch status {
	case 0:
		if msg != "" {
			t.Fatalf("no status but a message %q", msg)
		}
	case http.StatusBadRequest, http.StatusForbidden:
		if msg == "" || empty {
			t.Fatalf("status %d with message %q, empty %v", status, msg, empty)
		}
		return
	default:
		t.Fatalf("status %d for %q", status, data)
	}
	for _, st := range f.statuses {
		if !slices.Contains(novaStatuses, st) || st == "DELETED" {
			t.Fatalf("accepted status %q", st)
		}
	}
	if empty && v.atLeast(38) {
		t.Fatalf("an unknown status matches nothing at %s: want 400", v)
	}
	if !v.atLeast(26) && (f.tags != nil || f.tagsAny != nil || f.notTags != nil || f.notTagsAny != nil) {
		t.Fatalf("tag filters at %s", v)
	}
	// The same query sent again, encoded as a client encodes it, is the
	// same filter.
	q2, err := url.ParseQuery(q.Encode())
	if err != nil {
		t.Fatalf("re-encoded query %q: %v", q.Encode(), err)
	}
	f2, empty2, status2, _ := parseListFilter(q2, v)
	if status2 != 0 || empty2 != empty || !sameFilter(f, f2) {
		t.Fatalf("%q read as %+v; its re-encoding %q as %+v (status %d)", data, f, q.Encode(), f2, status2)
	}
}

func sameFilter(a, b listFilter) bool {
	re := func(r interface{ String() string }) string {
		if reflect.ValueOf(r).IsNil() {
			return "<nil>"
		}
		return r.String()
	}
	return re(a.name) == re(b.name) && re(a.ip) == re(b.ip) &&
		slices.Equal(a.statuses, b.statuses) && a.image == b.image && a.flavor == b.flavor &&
		slices.Equal(a.tags, b.tags) && slices.Equal(a.tagsAny, b.tagsAny) &&
		slices.Equal(a.notTags, b.notTags) && slices.Equal(a.notTagsAny, b.notTagsAny)
}
