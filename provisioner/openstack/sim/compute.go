package sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

const novaTime = "2006-01-02T15:04:05Z"

type microversion struct{ major, minor int }

func (v microversion) atLeast(minor int) bool { return v.major > 2 || v.major == 2 && v.minor >= minor }

func (v microversion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

func parseMicroversion(s string) (int, int, error) {
	major, minor, ok := strings.Cut(strings.TrimSpace(s), ".")
	a, err1 := strconv.Atoi(major)
	b, err2 := strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("invalid microversion %q", s)
	}
	return a, b, nil
}

// requestedMicroversion reads the compute microversion a request asks for.
func requestedMicroversion(r *http.Request) string {
	if v := r.Header.Get("X-OpenStack-Nova-API-Version"); v != "" {
		return v
	}
	for _, h := range r.Header.Values("OpenStack-API-Version") {
		if svc, v, ok := strings.Cut(strings.TrimSpace(h), " "); ok && svc == "compute" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// negotiate returns the microversion to answer with, or false after
// answering 406 itself.
func (s *Sim) negotiate(w http.ResponseWriter, r *http.Request) (microversion, bool) {
	maxMajor, maxMinor, _ := parseMicroversion(s.opts.MaxMicroversion)
	v := microversion{2, 1}
	switch asked := requestedMicroversion(r); asked {
	case "":
	case "latest":
		v = microversion{maxMajor, maxMinor}
	default:
		major, minor, err := parseMicroversion(asked)
		if err != nil || major != 2 || minor < 1 || minor > maxMinor {
			novaError(w, http.StatusNotAcceptable, fmt.Sprintf("Version %s is not supported by the API. Minimum is 2.1 and maximum is %s.", asked, s.opts.MaxMicroversion))
			return v, false
		}
		v = microversion{major, minor}
	}
	w.Header().Set("X-OpenStack-Nova-API-Version", v.String())
	w.Header().Set("OpenStack-API-Version", "compute "+v.String())
	w.Header().Add("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	return v, true
}

var (
	reServer         = regexp.MustCompile(`^/servers/([^/]+)$`)
	reServerMetadata = regexp.MustCompile(`^/servers/([^/]+)/metadata$`)
	reServerMetaKey  = regexp.MustCompile(`^/servers/([^/]+)/metadata/([^/]+)$`)
	reServerTags     = regexp.MustCompile(`^/servers/([^/]+)/tags$`)
	reServerAction   = regexp.MustCompile(`^/servers/([^/]+)/action$`)
	reServerTag      = regexp.MustCompile(`^/servers/([^/]+)/tags/([^/]+)$`)
	reFlavor         = regexp.MustCompile(`^/flavors/([^/]+)$`)
	reServerGroup    = regexp.MustCompile(`^/os-server-groups/([^/]+)$`)
)

func (s *Sim) serveCompute(w http.ResponseWriter, r *http.Request, sub string) {
	if sub == "" || sub == "/" {
		if r.Method != http.MethodGet {
			novaError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"version": map[string]any{
			"id": "v2.1", "status": "CURRENT", "version": s.opts.MaxMicroversion, "min_version": "2.1",
			"updated": "2013-07-23T11:33:21Z",
			"links":   []any{map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2.1/"}},
			"media-types": []any{map[string]any{"base": "application/json",
				"type": "application/vnd.openstack.compute+json;version=2.1"}},
		}})
		return
	}
	v, ok := s.negotiate(w, r)
	if !ok {
		return
	}
	m := r.Method
	switch {
	case sub == "/servers" && m == http.MethodPost:
		s.createServer(w, r, v)
	case (sub == "/servers" || sub == "/servers/detail") && m == http.MethodGet:
		s.listServers(w, r, v, sub == "/servers/detail")
	case reServer.MatchString(sub):
		id := reServer.FindStringSubmatch(sub)[1]
		switch m {
		case http.MethodGet:
			s.withServer(w, id, func(srv *server) (int, any) { return http.StatusOK, map[string]any{"server": s.serverJSON(srv, v)} })
		case http.MethodDelete:
			s.deleteServer(w, id)
		default:
			novaError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	case reServerAction.MatchString(sub) && m == http.MethodPost:
		s.serverAction(w, r, v, reServerAction.FindStringSubmatch(sub)[1])
	case reServerMetadata.MatchString(sub):
		s.serverMetadata(w, r, reServerMetadata.FindStringSubmatch(sub)[1])
	case reServerMetaKey.MatchString(sub):
		p := reServerMetaKey.FindStringSubmatch(sub)
		s.serverMetadatum(w, r, p[1], p[2])
	case reServerTags.MatchString(sub) && v.atLeast(26):
		s.serverTags(w, r, reServerTags.FindStringSubmatch(sub)[1])
	case reServerTag.MatchString(sub) && v.atLeast(26):
		p := reServerTag.FindStringSubmatch(sub)
		s.serverTag(w, r, p[1], p[2])
	case (sub == "/flavors" || sub == "/flavors/detail") && m == http.MethodGet:
		s.listFlavors(w, v, sub == "/flavors/detail")
	case reFlavor.MatchString(sub) && m == http.MethodGet:
		s.getFlavor(w, v, reFlavor.FindStringSubmatch(sub)[1])
	case sub == "/os-keypairs" && m == http.MethodGet:
		s.listKeypairs(w)
	case sub == "/os-server-groups" && m == http.MethodGet:
		s.listServerGroups(w, v)
	case sub == "/os-server-groups" && m == http.MethodPost:
		s.createServerGroup(w, r, v)
	case reServerGroup.MatchString(sub) && m == http.MethodGet:
		s.getServerGroup(w, v, reServerGroup.FindStringSubmatch(sub)[1])
	case sub == "/limits" && m == http.MethodGet:
		s.limits(w)
	default:
		novaError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

// withServer answers with what f returns for an existing server, or 404.
func (s *Sim) withServer(w http.ResponseWriter, id string, f func(*server) (int, any)) {
	s.mu.Lock()
	srv, ok := s.servers[id]
	var status int
	var body any
	if ok {
		status, body = f(srv)
	}
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	if status == http.StatusNoContent || body == nil {
		w.WriteHeader(status)
		return
	}
	if msg, isErr := body.(novaMessage); isErr {
		novaError(w, status, string(msg))
		return
	}
	writeJSON(w, status, body)
}

type novaMessage string

// allowed keys of a create body's "server" object (Nova's strict schema).
var createKeys = map[string]int{ // key → minimum microversion minor
	"name": 1, "imageRef": 1, "flavorRef": 1, "networks": 1, "security_groups": 1, "metadata": 1,
	"user_data": 1, "availability_zone": 1, "key_name": 1, "adminPass": 1, "accessIPv4": 1, "accessIPv6": 1,
	"config_drive": 1, "min_count": 1, "max_count": 1, "OS-DCF:diskConfig": 1, "block_device_mapping_v2": 1,
	"return_reservation_id": 1, "personality": 1, "description": 19, "tags": 52,
}

type createBody struct {
	Name             string                  `json:"name"`
	ImageRef         string                  `json:"imageRef"`
	FlavorRef        string                  `json:"flavorRef"`
	Networks         json.RawMessage         `json:"networks"`
	SecurityGroups   []struct{ Name string } `json:"security_groups"`
	Metadata         map[string]string       `json:"metadata"`
	UserData         *string                 `json:"user_data"`
	AvailabilityZone string                  `json:"availability_zone"`
	KeyName          string                  `json:"key_name"`
	Tags             []string                `json:"tags"`
	Description      string                  `json:"description"`
}

func (s *Sim) createServer(w http.ResponseWriter, r *http.Request, v microversion) {
	var outer map[string]json.RawMessage
	if err := decodeJSON(r, &outer); err != nil {
		novaError(w, http.StatusBadRequest, err.Error())
		return
	}
	raw, ok := outer["server"]
	if !ok {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. Value: None. 'server' is a required property")
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server: "+err.Error())
		return
	}
	for k := range keys {
		minMinor, known := createKeys[k]
		if !known || !v.atLeast(minMinor) {
			novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute server. Value: %s. Additional properties are not allowed ('%s' was unexpected)", raw, k))
			return
		}
	}
	var body createBody
	if err := json.Unmarshal(raw, &body); err != nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server: "+err.Error())
		return
	}
	var hints struct {
		Group string `json:"group"`
	}
	if h, ok := outer["os:scheduler_hints"]; ok {
		_ = json.Unmarshal(h, &hints)
	}
	if msg := validName(body.Name); msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	if msg := validMetadata(body.Metadata); msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	if msg := validTags(body.Tags); msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	if body.UserData != nil {
		if _, err := base64.StdEncoding.DecodeString(*body.UserData); err != nil || len(*body.UserData) > 65535 {
			novaError(w, http.StatusBadRequest, "Invalid input for field/attribute user_data. Value: <omitted>. 'user_data' is not a 'base64' or is too long")
			return
		}
	}

	s.mu.Lock()
	status, msg, srv := s.admitServer(body, hints.Group)
	s.mu.Unlock()
	if srv == nil {
		novaError(w, status, msg)
		return
	}
	w.Header().Set("Location", s.endpoint+"/compute/v2.1/servers/"+srv.id)
	sgs := make([]any, len(srv.secGroups))
	for i, n := range srv.secGroups {
		sgs[i] = map[string]any{"name": n}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": srv.id, "links": s.serverLinks(srv.id), "OS-DCF:diskConfig": "MANUAL",
		"security_groups": sgs, "adminPass": strings.ReplaceAll(uuid.NewString(), "-", "")[:12],
	}})
}

// admitServer validates a create against the simulator's state and, when
// it passes, creates the server and schedules its boot. Call with s.mu
// held; it returns the error status and message, or the server.
func (s *Sim) admitServer(body createBody, group string) (int, string, *server) {
	img, ok := s.images[body.ImageRef]
	if !ok || img.Status != "active" {
		return http.StatusBadRequest, fmt.Sprintf("Image %s could not be found.", body.ImageRef), nil
	}
	flavor, ok := s.flavor(body.FlavorRef)
	if !ok {
		return http.StatusBadRequest, fmt.Sprintf("Flavor %s could not be found.", body.FlavorRef), nil
	}
	net, msg := s.pickNetwork(body.Networks)
	if msg != "" {
		return http.StatusBadRequest, msg, nil
	}
	var secGroups []string
	for _, sg := range body.SecurityGroups {
		if !s.secGroups[sg.Name] {
			return http.StatusBadRequest, fmt.Sprintf("Security group %s not found for project %s.", sg.Name, s.projectID), nil
		}
		secGroups = append(secGroups, sg.Name)
	}
	if len(secGroups) == 0 {
		secGroups = []string{"default"}
	}
	if body.KeyName != "" && !s.keypairs[body.KeyName] {
		return http.StatusBadRequest, "Invalid key_name provided.", nil
	}
	if group != "" && !slices.ContainsFunc(s.srvGroups, func(g serverGroup) bool { return g.ID == group }) {
		return http.StatusBadRequest, fmt.Sprintf("Invalid server group %s", group), nil
	}
	if q := s.quota.Instances; q >= 0 && len(s.servers)+1 > q {
		return http.StatusForbidden, fmt.Sprintf("Quota exceeded for instances: Requested 1, but already used %d of %d instances", len(s.servers), q), nil
	}
	address, err := allocAddress(s.opts.HealthPorts)
	if err != nil {
		return http.StatusInternalServerError, err.Error(), nil
	}

	now := time.Now().UTC()
	srv := &server{
		id: uuid.NewString(), name: body.Name, status: "BUILD", vmState: "building", taskState: "spawning",
		imageID: img.ID, flavorID: flavor.ID, network: net.Name, networkID: net.ID, address: address,
		az: body.AvailabilityZone, keyName: body.KeyName, secGroups: secGroups,
		metadata: body.Metadata, tags: body.Tags, created: now, updated: now,
		description: body.Description, serverGroup: group, ports: s.opts.HealthPorts,
		bootTime: s.draw(s.opts.BootTime), healthDelay: s.draw(s.opts.HealthDelay),
	}
	if srv.az == "" {
		srv.az = "nova"
	}
	if srv.metadata == nil {
		srv.metadata = map[string]string{}
	}
	if body.UserData != nil {
		srv.userData = *body.UserData
	}
	s.servers[srv.id] = srv
	s.order = append(s.order, srv)

	outcome := "active"
	switch {
	case s.stickBoot > 0:
		s.stickBoot--
		outcome = "stuck"
	case s.failBoots > 0 || img.BootFails:
		if !img.BootFails {
			s.failBoots--
		}
		outcome = "error"
	}
	if outcome != "stuck" {
		s.after(srv.bootTime, func() { s.finishBoot(srv, outcome == "error") })
	}

	return 0, "", srv
}

func (s *Sim) finishBoot(srv *server, fail bool) {
	s.mu.Lock()
	if _, ok := s.servers[srv.id]; !ok || srv.deleting {
		s.mu.Unlock()
		return
	}
	now := time.Now().UTC()
	srv.updated = now
	if fail {
		srv.status, srv.vmState, srv.taskState = "ERROR", "error", ""
		srv.fault, srv.faultAt = "No valid host was found. There are not enough hosts available.", now
		s.mu.Unlock()
		return
	}
	srv.status, srv.vmState, srv.taskState, srv.powerState = "ACTIVE", "active", "", 1
	srv.launchedAt, srv.activeAt = now, now
	s.after(srv.healthDelay, func() {
		s.mu.Lock()
		srv.appUp = true
		s.mu.Unlock()
		s.syncApp(srv)
	})
	s.mu.Unlock()
}

func (s *Sim) pickNetwork(raw json.RawMessage) (Network, string) {
	if len(raw) == 0 || string(raw) == `"auto"` || string(raw) == "null" {
		return s.networks[0], ""
	}
	if string(raw) == `"none"` {
		return Network{}, ""
	}
	var nets []struct {
		UUID string `json:"uuid"`
		Port string `json:"port"`
	}
	if err := json.Unmarshal(raw, &nets); err != nil {
		return Network{}, "Invalid input for field/attribute networks: " + err.Error()
	}
	if len(nets) == 0 {
		return s.networks[0], ""
	}
	for _, n := range s.networks {
		if n.ID == nets[0].UUID {
			return n, ""
		}
	}
	return Network{}, fmt.Sprintf("Network %s could not be found.", nets[0].UUID)
}

func (s *Sim) flavor(ref string) (Flavor, bool) {
	for _, f := range s.flavors {
		if f.ID == ref || strings.HasSuffix(ref, "/flavors/"+f.ID) {
			return f, true
		}
	}
	return Flavor{}, false
}

func validName(name string) string {
	if strings.TrimSpace(name) == "" || len(name) > 255 {
		return "Invalid input for field/attribute name. Value: " + name + ". 'name' must be 1 to 255 characters"
	}
	return ""
}

var metaKey = regexp.MustCompile(`^[a-zA-Z0-9-_:. ]{1,255}$`)

func validMetadata(md map[string]string) string {
	if len(md) > 128 {
		return "Quota exceeded for metadata_items: Requested " + strconv.Itoa(len(md)) + ", but already used 0 of 128 metadata_items"
	}
	for k, v := range md {
		if !metaKey.MatchString(k) {
			return fmt.Sprintf("Invalid input for field/attribute metadata. Value: %s. '%s' does not match any of the regexes", k, k)
		}
		if len(v) > 255 {
			return fmt.Sprintf("Invalid input for field/attribute %s. Value: %s. is too long", k, v)
		}
	}
	return ""
}

func validTags(tags []string) string {
	if len(tags) > 50 {
		return fmt.Sprintf("Invalid input for field/attribute tags. Value: %v. %v is too long", tags, tags)
	}
	for _, t := range tags {
		if t == "" || len(t) > 60 || strings.ContainsAny(t, "/,") {
			return fmt.Sprintf("Invalid input for field/attribute tags. Value: %s. '%s' does not match '^[^,/]*$' or is longer than 60", t, t)
		}
	}
	return ""
}

// listServers answers GET /servers[/detail]: newest first, filtered, a
// page at a time.
func (s *Sim) listServers(w http.ResponseWriter, r *http.Request, v microversion, detail bool) {
	q := r.URL.Query()
	limit := s.opts.NovaMaxLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			novaError(w, http.StatusBadRequest, "limit param must be an integer")
			return
		}
		limit = min(n, s.opts.NovaMaxLimit)
	}
	var nameRe *regexp.Regexp
	if n := q.Get("name"); n != "" {
		re, err := regexp.Compile(n)
		if err != nil {
			novaError(w, http.StatusBadRequest, "Invalid name filter")
			return
		}
		nameRe = re
	}
	split := func(key string) []string {
		if s := q.Get(key); s != "" {
			return strings.Split(s, ",")
		}
		return nil
	}
	var tags, tagsAny, notTags, notTagsAny []string
	if v.atLeast(26) {
		tags, tagsAny, notTags, notTagsAny = split("tags"), split("tags-any"), split("not-tags"), split("not-tags-any")
	}
	match := func(srv *server) bool {
		switch {
		case nameRe != nil && !nameRe.MatchString(srv.name),
			q.Get("status") != "" && !strings.EqualFold(q.Get("status"), srv.status),
			q.Get("image") != "" && q.Get("image") != srv.imageID,
			q.Get("flavor") != "" && q.Get("flavor") != srv.flavorID:
			return false
		}
		has := func(t string) bool { return slices.Contains(srv.tags, t) }
		for _, t := range tags {
			if !has(t) {
				return false
			}
		}
		if len(tagsAny) > 0 && !slices.ContainsFunc(tagsAny, has) {
			return false
		}
		if len(notTags) > 0 && !slices.ContainsFunc(notTags, func(t string) bool { return !has(t) }) {
			return false
		}
		if slices.ContainsFunc(notTagsAny, has) {
			return false
		}
		return true
	}

	s.mu.Lock()
	start := len(s.order) - 1
	if marker := q.Get("marker"); marker != "" {
		idx := slices.IndexFunc(s.order, func(srv *server) bool { return srv.id == marker })
		if idx < 0 {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, fmt.Sprintf("marker [%s] not found", marker))
			return
		}
		start = idx - 1
	}
	page := make([]any, 0, min(limit, len(s.order)))
	last := ""
	for i := start; i >= 0 && len(page) < limit; i-- {
		srv := s.order[i]
		if !match(srv) {
			continue
		}
		if detail {
			page = append(page, s.serverJSON(srv, v))
		} else {
			page = append(page, map[string]any{"id": srv.id, "name": srv.name, "links": s.serverLinks(srv.id)})
		}
		last = srv.id
	}
	s.mu.Unlock()

	body := map[string]any{"servers": page}
	if limit > 0 && len(page) == limit {
		next := url.Values{}
		for k, vals := range q {
			if k != "marker" && k != "limit" {
				next[k] = vals
			}
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("marker", last)
		path := "/servers"
		if detail {
			path = "/servers/detail"
		}
		body["servers_links"] = []any{map[string]any{"rel": "next", "href": s.endpoint + "/compute/v2.1" + path + "?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) serverLinks(id string) []any {
	return []any{
		map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2.1/servers/" + id},
		map[string]any{"rel": "bookmark", "href": s.endpoint + "/compute/servers/" + id},
	}
}

// serverJSON renders a server as Nova does at microversion v. Call with
// s.mu held.
func (s *Sim) serverJSON(srv *server, v microversion) map[string]any {
	nullable := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format("2006-01-02T15:04:05.000000")
	}
	var task any
	if srv.taskState != "" {
		task = srv.taskState
	}
	addresses := map[string]any{}
	if srv.network != "" {
		addresses[srv.network] = []any{map[string]any{
			"addr": srv.address, "version": 4, "OS-EXT-IPS:type": "fixed",
			"OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:" + srv.id[0:2] + ":" + srv.id[2:4] + ":" + srv.id[4:6],
		}}
	}
	sgs := make([]any, len(srv.secGroups))
	for i, n := range srv.secGroups {
		sgs[i] = map[string]any{"name": n}
	}
	f, _ := s.flavor(srv.flavorID)
	var flavor map[string]any
	if v.atLeast(47) {
		flavor = map[string]any{"vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk, "ephemeral": 0, "swap": 0,
			"original_name": f.Name, "extra_specs": map[string]any{}}
	} else {
		flavor = map[string]any{"id": f.ID, "links": []any{map[string]any{"rel": "bookmark", "href": s.endpoint + "/compute/flavors/" + f.ID}}}
	}
	out := map[string]any{
		"id": srv.id, "name": srv.name, "status": srv.status,
		"tenant_id": s.projectID, "user_id": s.userID, "metadata": srv.metadata,
		"hostId":  "c6b2a1f4e3d7a9b8c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9",
		"image":   map[string]any{"id": srv.imageID, "links": []any{map[string]any{"rel": "bookmark", "href": s.endpoint + "/compute/images/" + srv.imageID}}},
		"flavor":  flavor,
		"created": srv.created.Format(novaTime), "updated": srv.updated.Format(novaTime),
		"addresses": addresses, "accessIPv4": "", "accessIPv6": "", "links": s.serverLinks(srv.id),
		"key_name": nil, "security_groups": sgs, "OS-EXT-AZ:availability_zone": srv.az,
		"OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": srv.vmState, "OS-EXT-STS:power_state": srv.powerState,
		"OS-SRV-USG:launched_at": nullable(srv.launchedAt), "OS-SRV-USG:terminated_at": nil,
		"OS-DCF:diskConfig": "MANUAL", "os-extended-volumes:volumes_attached": []any{},
		"config_drive": "", "progress": 0,
	}
	if srv.keyName != "" {
		out["key_name"] = srv.keyName
	}
	if v.atLeast(9) {
		out["locked"] = false
	}
	if v.atLeast(19) {
		var d any
		if srv.description != "" {
			d = srv.description
		}
		out["description"] = d
	}
	if v.atLeast(26) {
		tags := srv.tags
		if tags == nil {
			tags = []string{}
		}
		out["tags"] = tags
	}
	if srv.status == "ERROR" {
		out["fault"] = map[string]any{"code": 500, "message": srv.fault, "created": srv.faultAt.Format(novaTime)}
	}
	return out
}

func (s *Sim) deleteServer(w http.ResponseWriter, id string) {
	s.withServer(w, id, func(srv *server) (int, any) {
		if srv.deleting {
			return http.StatusNoContent, nil
		}
		srv.deleting, srv.taskState, srv.updated = true, "deleting", time.Now().UTC()
		s.after(s.draw(s.opts.DeleteTime), func() { s.removeServer(srv) })
		return http.StatusNoContent, nil
	})
}

func (s *Sim) removeServer(srv *server) {
	s.mu.Lock()
	if _, ok := s.servers[srv.id]; ok {
		delete(s.servers, srv.id)
		if i := slices.Index(s.order, srv); i >= 0 {
			s.order = slices.Delete(s.order, i, i+1)
		}
	}
	s.mu.Unlock()
	srv.stopApp()
}

// serverAction answers POST /servers/{id}/action. Only createImage is
// simulated: it records a snapshot image in Glance, queued and then active
// after the snapshot time, as a real hypervisor driver would (Nova's fake
// driver, by contrast, leaves it queued for ever).
func (s *Sim) serverAction(w http.ResponseWriter, r *http.Request, v microversion, id string) {
	var body struct {
		CreateImage *struct {
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		} `json:"createImage"`
	}
	if err := decodeJSON(r, &body); err != nil {
		novaError(w, http.StatusBadRequest, err.Error())
		return
	}
	if body.CreateImage == nil {
		novaError(w, http.StatusBadRequest, "There is no such action in the simulator")
		return
	}
	if strings.TrimSpace(body.CreateImage.Name) == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute name. Value: . '' is too short")
		return
	}
	s.withServer(w, id, func(srv *server) (int, any) {
		if srv.deleting || srv.status != "ACTIVE" && srv.status != "SHUTOFF" {
			return http.StatusConflict, novaMessage(fmt.Sprintf("Cannot 'createImage' instance %s while it is in vm_state %s", id, srv.vmState))
		}
		props := map[string]string{"image_type": "snapshot", "instance_uuid": srv.id, "base_image_ref": srv.imageID, "owner_project_name": s.opts.ProjectName}
		for k, val := range body.CreateImage.Metadata {
			props[k] = val
		}
		now := time.Now().UTC()
		img := &image{Image: Image{ID: uuid.NewString(), Name: body.CreateImage.Name, Status: "queued", Created: now,
			Properties: props, Visibility: "private"}, updated: now, seq: len(s.images)}
		s.images[img.ID] = img
		s.after(s.draw(s.opts.SnapshotTime), func() {
			s.mu.Lock()
			img.Status, img.updated = "active", time.Now().UTC()
			s.mu.Unlock()
		})
		w.Header().Set("Location", s.endpoint+"/image/v2/images/"+img.ID)
		if v.atLeast(45) {
			return http.StatusAccepted, map[string]any{"image_id": img.ID}
		}
		return http.StatusAccepted, nil
	})
}

func (s *Sim) serverMetadata(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		Metadata map[string]string `json:"metadata"`
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if err := decodeJSON(r, &body); err != nil {
			novaError(w, http.StatusBadRequest, err.Error())
			return
		}
		if msg := validMetadata(body.Metadata); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	}
	s.withServer(w, id, func(srv *server) (int, any) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			merged := map[string]string{}
			for k, v := range srv.metadata {
				merged[k] = v
			}
			for k, v := range body.Metadata {
				merged[k] = v
			}
			if len(merged) > 128 {
				return http.StatusForbidden, novaMessage("Quota exceeded for metadata_items")
			}
			srv.metadata = merged
		case http.MethodPut:
			srv.metadata = body.Metadata
			if srv.metadata == nil {
				srv.metadata = map[string]string{}
			}
		default:
			return http.StatusMethodNotAllowed, novaMessage("method not allowed")
		}
		srv.updated = time.Now().UTC()
		return http.StatusOK, map[string]any{"metadata": srv.metadata}
	})
}

func (s *Sim) serverMetadatum(w http.ResponseWriter, r *http.Request, id, key string) {
	var body struct {
		Meta map[string]string `json:"meta"`
	}
	if r.Method == http.MethodPut {
		if err := decodeJSON(r, &body); err != nil || len(body.Meta) != 1 || !hasKey(body.Meta, key) {
			novaError(w, http.StatusBadRequest, "Request body and URI mismatch")
			return
		}
	}
	s.withServer(w, id, func(srv *server) (int, any) {
		switch r.Method {
		case http.MethodGet:
			v, ok := srv.metadata[key]
			if !ok {
				return http.StatusNotFound, novaMessage("Metadata item was not found")
			}
			return http.StatusOK, map[string]any{"meta": map[string]string{key: v}}
		case http.MethodPut:
			m := map[string]string{}
			for k, v := range srv.metadata {
				m[k] = v
			}
			m[key] = body.Meta[key]
			srv.metadata = m
			return http.StatusOK, map[string]any{"meta": map[string]string{key: body.Meta[key]}}
		case http.MethodDelete:
			if _, ok := srv.metadata[key]; !ok {
				return http.StatusNotFound, novaMessage("Metadata item was not found")
			}
			m := map[string]string{}
			for k, v := range srv.metadata {
				if k != key {
					m[k] = v
				}
			}
			srv.metadata = m
			return http.StatusNoContent, nil
		}
		return http.StatusMethodNotAllowed, novaMessage("method not allowed")
	})
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func (s *Sim) serverTags(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		Tags []string `json:"tags"`
	}
	if r.Method == http.MethodPut {
		if err := decodeJSON(r, &body); err != nil {
			novaError(w, http.StatusBadRequest, err.Error())
			return
		}
		if msg := validTags(body.Tags); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	}
	s.withServer(w, id, func(srv *server) (int, any) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			srv.tags = slices.Clone(body.Tags)
		case http.MethodDelete:
			srv.tags = nil
			return http.StatusNoContent, nil
		default:
			return http.StatusMethodNotAllowed, novaMessage("method not allowed")
		}
		tags := srv.tags
		if tags == nil {
			tags = []string{}
		}
		return http.StatusOK, map[string]any{"tags": tags}
	})
}

func (s *Sim) serverTag(w http.ResponseWriter, r *http.Request, id, tag string) {
	tag, _ = url.PathUnescape(tag)
	s.withServer(w, id, func(srv *server) (int, any) {
		has := slices.Contains(srv.tags, tag)
		switch r.Method {
		case http.MethodGet:
			if !has {
				return http.StatusNotFound, novaMessage("Tag " + tag + " could not be found")
			}
			return http.StatusNoContent, nil
		case http.MethodPut:
			if msg := validTags(append(slices.Clone(srv.tags), tag)); msg != "" {
				return http.StatusBadRequest, novaMessage(msg)
			}
			if !has {
				srv.tags = append(slices.Clone(srv.tags), tag)
			}
			return http.StatusNoContent, nil
		case http.MethodDelete:
			if !has {
				return http.StatusNotFound, novaMessage("Tag " + tag + " could not be found")
			}
			srv.tags = slices.DeleteFunc(slices.Clone(srv.tags), func(t string) bool { return t == tag })
			return http.StatusNoContent, nil
		}
		return http.StatusMethodNotAllowed, novaMessage("method not allowed")
	})
}

func (s *Sim) flavorJSON(f Flavor, v microversion, detail bool) map[string]any {
	out := map[string]any{"id": f.ID, "name": f.Name,
		"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/compute/v2.1/flavors/" + f.ID}}}
	if v.atLeast(55) {
		out["description"] = nil
	}
	if detail {
		out["ram"], out["vcpus"], out["disk"] = f.RAM, f.VCPUs, f.Disk
		out["OS-FLV-EXT-DATA:ephemeral"], out["OS-FLV-DISABLED:disabled"] = 0, false
		out["swap"], out["rxtx_factor"], out["os-flavor-access:is_public"] = "", 1.0, true
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

func (s *Sim) getFlavor(w http.ResponseWriter, v microversion, id string) {
	s.mu.Lock()
	f, ok := s.flavor(id)
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, fmt.Sprintf("Flavor %s could not be found.", id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavor": s.flavorJSON(f, v, true)})
}

func (s *Sim) listKeypairs(w http.ResponseWriter) {
	s.mu.Lock()
	list := []any{}
	for _, name := range slices.Sorted(maps.Keys(s.keypairs)) {
		list = append(list, map[string]any{"keypair": map[string]any{"name": name, "type": "ssh",
			"fingerprint": "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", "public_key": "ssh-ed25519 AAAA simulated"}})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"keypairs": list})
}

func (s *Sim) serverGroupJSON(g serverGroup, v microversion) map[string]any {
	var members []string
	for _, srv := range s.order {
		if srv.serverGroup == g.ID {
			members = append(members, srv.id)
		}
	}
	if members == nil {
		members = []string{}
	}
	out := map[string]any{"id": g.ID, "name": g.Name, "members": members, "project_id": s.projectID, "user_id": s.userID}
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

func (s *Sim) getServerGroup(w http.ResponseWriter, v microversion, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.srvGroups {
		if g.ID == id {
			writeJSON(w, http.StatusOK, map[string]any{"server_group": s.serverGroupJSON(g, v)})
			return
		}
	}
	novaError(w, http.StatusNotFound, fmt.Sprintf("Instance group %s could not be found.", id))
}

func (s *Sim) createServerGroup(w http.ResponseWriter, r *http.Request, v microversion) {
	var body struct {
		ServerGroup struct {
			Name     string   `json:"name"`
			Policy   string   `json:"policy"`
			Policies []string `json:"policies"`
		} `json:"server_group"`
	}
	if err := decodeJSON(r, &body); err != nil || body.ServerGroup.Name == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server_group")
		return
	}
	policy := body.ServerGroup.Policy
	if policy == "" && len(body.ServerGroup.Policies) > 0 {
		policy = body.ServerGroup.Policies[0]
	}
	id := s.AddServerGroup(body.ServerGroup.Name, policy)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.srvGroups {
		if g.ID == id {
			writeJSON(w, http.StatusOK, map[string]any{"server_group": s.serverGroupJSON(g, v)})
		}
	}
}

func (s *Sim) limits(w http.ResponseWriter) {
	s.mu.Lock()
	q, used := s.quota.Instances, len(s.servers)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": map[string]any{
		"maxTotalInstances": q, "totalInstancesUsed": used, "maxTotalCores": -1, "maxTotalRAMSize": -1,
		"totalCoresUsed": 0, "totalRAMUsed": 0, "maxServerMeta": 128, "maxTotalKeypairs": 100,
		"maxServerGroups": 10, "maxServerGroupMembers": 10, "totalServerGroupsUsed": 0,
	}}})
}
