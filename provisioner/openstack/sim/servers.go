package sim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	"unicode"

	"github.com/google/uuid"
)

const (
	maxMetadataItems = 128 // Nova's default metadata_items quota
	maxTags          = 50
	maxTagLen        = 60
)

// createKeys are the keys Nova's create schema allows in "server", with
// the first microversion that allows each and the last (0: still allowed).
var createKeys = map[string][2]int{
	"name": {1, 0}, "imageRef": {1, 0}, "flavorRef": {1, 0}, "adminPass": {1, 0}, "metadata": {1, 0},
	"networks": {1, 0}, "OS-DCF:diskConfig": {1, 0}, "accessIPv4": {1, 0}, "accessIPv6": {1, 0},
	"personality": {1, 56}, "availability_zone": {1, 0}, "block_device_mapping": {1, 0},
	"block_device_mapping_v2": {1, 0}, "config_drive": {1, 0}, "key_name": {1, 0}, "min_count": {1, 0},
	"max_count": {1, 0}, "return_reservation_id": {1, 0}, "security_groups": {1, 0}, "user_data": {1, 0},
	"description": {19, 0}, "tags": {52, 0}, "trusted_image_certificates": {63, 0},
	"host": {74, 0}, "hypervisor_hostname": {74, 0}, "hostname": {90, 0},
}

// schemaError is Nova's message for a request that fails its JSON schema.
func schemaError(field string, value any, msg string) string {
	var v string
	switch x := value.(type) {
	case string:
		v = x
	case json.RawMessage:
		v = string(x)
	default:
		b, _ := json.Marshal(x)
		v = string(b)
	}
	return fmt.Sprintf("Invalid input for field/attribute %s. Value: %s. %s", field, v, msg)
}

// validName checks Nova's "name" format: 1 to 255 printable characters,
// not starting or ending with whitespace.
func validName(field, v string) string {
	switch {
	case v == "":
		return schemaError(field, v, "'' is too short")
	case len([]rune(v)) > 255:
		return schemaError(field, v, fmt.Sprintf("'%s' is too long", v))
	case strings.TrimSpace(v) != v || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }):
		return schemaError(field, v, fmt.Sprintf("'%s' is not a 'name'", v))
	}
	return ""
}

var metadataKey = regexp.MustCompile(`^[a-zA-Z0-9\-_:. ]{1,255}$`)

// parseMetadata reads a metadata object as Nova's schema does: keys of 1
// to 255 characters from [a-zA-Z0-9-_:. ], string values of at most 255.
// The item count is a quota, checked separately (403).
func parseMetadata(field string, raw json.RawMessage) (map[string]string, string) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, schemaError(field, raw, fmt.Sprintf("%s is not of type 'object'", raw))
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !metadataKey.MatchString(k) {
			return nil, schemaError(field, raw, fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k))
		}
		v, ok := m[k].(string)
		if !ok {
			return nil, schemaError(k, fmt.Sprint(m[k]), fmt.Sprintf("%v is not of type 'string'", m[k]))
		}
		if len([]rune(v)) > 255 {
			return nil, schemaError(k, v, fmt.Sprintf("'%s' is too long", v))
		}
		out[k] = v
	}
	return out, ""
}

func metadataQuotaError() string {
	return fmt.Sprintf("Maximum number of metadata items exceeds %d", maxMetadataItems)
}

// validTag checks one tag: 1 to 60 characters, no "/" or ",".
func validTag(t string) string {
	switch {
	case t == "":
		return "'' is too short"
	case len([]rune(t)) > maxTagLen:
		return fmt.Sprintf("'%s' is too long", t)
	case strings.ContainsAny(t, "/,"):
		return fmt.Sprintf("'%s' does not match '^[^,/]*$'", t)
	}
	return ""
}

func parseTags(raw json.RawMessage) ([]string, string) {
	var tags []string
	if err := json.Unmarshal(raw, &tags); err != nil {
		return nil, schemaError("tags", raw, fmt.Sprintf("%s is not of type 'array' of strings", raw))
	}
	if len(tags) > maxTags {
		return nil, schemaError("tags", raw, fmt.Sprintf("%s is too long", raw))
	}
	for _, t := range tags {
		if msg := validTag(t); msg != "" {
			return nil, schemaError("tags", t, msg)
		}
	}
	return tags, ""
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil
}

type createRequest struct {
	name, imageRef, flavorRef string
	adminPass                 string
	metadata                  map[string]string
	networks                  []networkRequest
	networksMode              string // "", "auto" or "none"
	secGroups                 []string
	userData                  string
	az                        string
	keyName                   string
	tags                      []string
	description               *string
	hostname                  string
	group                     string
	reservationID             bool
	userAgent                 string // not Nova's: the sender, for Server.CreatedBy
}

type networkRequest struct {
	UUID    string `json:"uuid"`
	Port    string `json:"port"`
	FixedIP string `json:"fixed_ip"`
	Tag     string `json:"tag"`
}

// parseCreate applies Nova's create schema at microversion v.
func parseCreate(body []byte, v microversion) (*createRequest, string) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil || outer == nil {
		return nil, "The request body is malformed: a JSON object was expected"
	}
	for _, k := range slices.Sorted(maps.Keys(outer)) {
		if k != "server" && k != "os:scheduler_hints" && k != "OS-SCH-HNT:scheduler_hints" {
			return nil, schemaError("root", body, fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k))
		}
	}
	raw, ok := outer["server"]
	if !ok {
		return nil, schemaError("root", body, "'server' is a required property")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil || keys == nil {
		return nil, schemaError("server", raw, fmt.Sprintf("%s is not of type 'object'", raw))
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		span, known := createKeys[k]
		if !known || !v.atLeast(span[0]) || span[1] > 0 && v.atLeast(span[1]+1) {
			return nil, schemaError("server", raw, fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k))
		}
	}
	required := []string{"name", "flavorRef"}
	if v.atLeast(37) {
		required = append(required, "networks")
	}
	for _, k := range required {
		if _, ok := keys[k]; !ok {
			return nil, schemaError("server", raw, fmt.Sprintf("'%s' is a required property", k))
		}
	}
	str := func(k string) (string, string) {
		r, ok := keys[k]
		if !ok {
			return "", ""
		}
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return "", schemaError(k, r, fmt.Sprintf("%s is not of type 'string'", r))
		}
		return s, ""
	}
	c := &createRequest{}
	var msg string
	if c.name, msg = str("name"); msg != "" {
		return nil, msg
	}
	if msg = validName("name", c.name); msg != "" {
		return nil, msg
	}
	if c.imageRef, msg = str("imageRef"); msg != "" {
		return nil, msg
	}
	if c.imageRef != "" && !isUUID(c.imageRef) {
		return nil, schemaError("imageRef", c.imageRef, fmt.Sprintf("'%s' is not valid under any of the given schemas", c.imageRef))
	}
	if r := keys["flavorRef"]; len(r) > 0 && r[0] != '"' {
		var n json.Number
		if err := json.Unmarshal(r, &n); err != nil {
			return nil, schemaError("flavorRef", r, fmt.Sprintf("%s is not of type 'string', 'integer'", r))
		}
		c.flavorRef = n.String()
	} else if c.flavorRef, msg = str("flavorRef"); msg != "" {
		return nil, msg
	}
	if c.flavorRef == "" {
		return nil, schemaError("flavorRef", "", "'' is too short")
	}
	if c.adminPass, msg = str("adminPass"); msg != "" {
		return nil, msg
	}
	if r, ok := keys["metadata"]; ok {
		if c.metadata, msg = parseMetadata("metadata", r); msg != "" {
			return nil, msg
		}
	}
	if r, ok := keys["tags"]; ok {
		if c.tags, msg = parseTags(r); msg != "" {
			return nil, msg
		}
	}
	if r, ok := keys["user_data"]; ok && string(r) != "null" {
		if c.userData, msg = str("user_data"); msg != "" {
			return nil, msg
		}
		if len(c.userData) > 65535 {
			return nil, schemaError("user_data", "<omitted>", "is too long")
		}
		if _, err := base64.StdEncoding.DecodeString(c.userData); err != nil {
			return nil, schemaError("user_data", c.userData, fmt.Sprintf("'%s' is not a 'base64'", c.userData))
		}
	}
	if c.az, msg = str("availability_zone"); msg != "" {
		return nil, msg
	}
	if _, ok := keys["availability_zone"]; ok {
		if msg = validName("availability_zone", c.az); msg != "" {
			return nil, msg
		}
	}
	if c.keyName, msg = str("key_name"); msg != "" {
		return nil, msg
	}
	if _, ok := keys["key_name"]; ok {
		if msg = validName("key_name", c.keyName); msg != "" {
			return nil, msg
		}
	}
	if r, ok := keys["security_groups"]; ok {
		var sgs []map[string]json.RawMessage
		if err := json.Unmarshal(r, &sgs); err != nil {
			return nil, schemaError("security_groups", r, fmt.Sprintf("%s is not of type 'array'", r))
		}
		for _, sg := range sgs {
			for k := range sg {
				if k != "name" {
					return nil, schemaError("security_groups", r, fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k))
				}
			}
			var name string
			if err := json.Unmarshal(sg["name"], &name); err == nil && name != "" && !slices.Contains(c.secGroups, name) {
				c.secGroups = append(c.secGroups, name)
			}
		}
	}
	if r, ok := keys["description"]; ok && string(r) != "null" {
		var d string
		if err := json.Unmarshal(r, &d); err != nil {
			return nil, schemaError("description", r, fmt.Sprintf("%s is not of type 'string', 'null'", r))
		}
		if len([]rune(d)) > 255 {
			return nil, schemaError("description", d, fmt.Sprintf("'%s' is too long", d))
		}
		c.description = &d
	}
	if c.hostname, msg = str("hostname"); msg != "" {
		return nil, msg
	}
	if msg = parseNetworks(c, keys["networks"], v); msg != "" {
		return nil, msg
	}
	for _, k := range []string{"min_count", "max_count"} {
		r, ok := keys[k]
		if !ok {
			continue
		}
		var n json.Number
		if err := json.Unmarshal(r, &n); err != nil {
			var s string
			if json.Unmarshal(r, &s) != nil {
				return nil, schemaError(k, r, fmt.Sprintf("%s is not of type 'integer', 'string'", r))
			}
			n = json.Number(s)
		}
		i, err := n.Int64()
		if err != nil || i < 1 {
			return nil, schemaError(k, r, fmt.Sprintf("%s is less than the minimum of 1", r))
		}
		if i > 1 {
			return nil, fmt.Sprintf("The simulator creates one server per request; %s %d is not simulated", k, i)
		}
	}
	if r, ok := keys["return_reservation_id"]; ok {
		var b bool
		if json.Unmarshal(r, &b) == nil {
			c.reservationID = b
		}
	}
	if _, ok := keys["block_device_mapping_v2"]; ok && c.imageRef == "" {
		return nil, "Booting from volume is not simulated"
	}
	if _, ok := keys["block_device_mapping"]; ok && c.imageRef == "" {
		return nil, "Booting from volume is not simulated"
	}
	if c.imageRef == "" {
		return nil, "Missing imageRef attribute"
	}
	for _, hk := range []string{"os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"} {
		r, ok := outer[hk]
		if !ok {
			continue
		}
		var hints map[string]json.RawMessage
		if err := json.Unmarshal(r, &hints); err != nil {
			return nil, schemaError(hk, r, fmt.Sprintf("%s is not of type 'object'", r))
		}
		if g, ok := hints["group"]; ok {
			var one string
			var many []string
			if json.Unmarshal(g, &one) == nil {
				many = []string{one}
			} else if json.Unmarshal(g, &many) != nil {
				return nil, schemaError("group", g, fmt.Sprintf("%s is not valid under any of the given schemas", g))
			}
			for _, id := range many {
				if !isUUID(id) {
					return nil, schemaError("group", g, fmt.Sprintf("%s is not valid under any of the given schemas", g))
				}
			}
			if len(many) > 0 {
				c.group = many[0]
			}
		}
	}
	return c, ""
}

// parseNetworks reads "networks": below 2.37 a list, optional; from 2.37
// a list of objects with UUIDs or one of "auto" and "none", required.
func parseNetworks(c *createRequest, raw json.RawMessage, v microversion) string {
	if raw == nil {
		return ""
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		if !v.atLeast(37) || mode != "auto" && mode != "none" {
			return schemaError("networks", raw, fmt.Sprintf("%s is not valid under any of the given schemas", raw))
		}
		c.networksMode = mode
		return ""
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return schemaError("networks", raw, fmt.Sprintf("%s is not valid under any of the given schemas", raw))
	}
	for _, item := range items {
		for k := range item {
			allowed := k == "uuid" || k == "port" || k == "fixed_ip" || k == "tag" && (v.atLeast(32) && !v.atLeast(37) || v.atLeast(42))
			if !allowed {
				return schemaError("networks", raw, fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k))
			}
		}
		b, _ := json.Marshal(item)
		var n networkRequest
		if err := json.Unmarshal(b, &n); err != nil {
			return schemaError("networks", raw, err.Error())
		}
		if v.atLeast(37) && n.UUID != "" && !isUUID(n.UUID) {
			return schemaError("networks[0].uuid", n.UUID, fmt.Sprintf("'%s' is not a 'uuid'", n.UUID))
		}
		if n.UUID == "" && n.Port == "" {
			return "Bad networks format: network uuid is not in proper format ()"
		}
		c.networks = append(c.networks, n)
	}
	return ""
}

// createServer answers POST /servers.
func (s *Sim) createServer(w http.ResponseWriter, r *http.Request, v microversion) {
	var raw json.RawMessage
	if err := decodeJSON(r, &raw); err != nil {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return
	}
	c, msg := parseCreate(raw, v)
	if msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	if c.hostname == "" {
		c.hostname = sanitizeHostname(c.name)
	}
	c.userAgent = r.UserAgent()
	if !v.atLeast(19) {
		// Before 2.19 Nova stores the name as the description.
		c.description = &c.name
	}
	s.mu.Lock()
	srv, status, msg := s.admit(c)
	s.mu.Unlock()
	if srv == nil {
		novaError(w, status, msg)
		return
	}
	w.Header().Set("Location", s.endpoint+"/compute/v2.1/servers/"+srv.id)
	if c.reservationID {
		writeJSON(w, http.StatusAccepted, map[string]any{"reservation_id": "r-" + srv.id[:8]})
		return
	}
	sgs := make([]nameJSON, len(srv.secGroups))
	for i, n := range srv.secGroups {
		sgs[i] = nameJSON{n}
	}
	pass := c.adminPass
	if pass == "" {
		pass = strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": srv.id, "links": s.serverLinks(srv.id), "OS-DCF:diskConfig": "MANUAL",
		"security_groups": sgs, "adminPass": pass,
	}})
}

// admit checks a create against the simulator's state and, when it
// passes, creates the server and schedules its boot. Call with s.mu held;
// it returns the server, or the error status and message.
func (s *Sim) admit(c *createRequest) (*server, int, string) {
	flavor, ok := s.flavor(c.flavorRef)
	if !ok {
		return nil, http.StatusBadRequest, fmt.Sprintf("Flavor %s could not be found.", c.flavorRef)
	}
	img, ok := s.images[c.imageRef]
	if !ok {
		return nil, http.StatusBadRequest, "Can not find requested image"
	}
	if img.Status != "active" {
		return nil, http.StatusBadRequest, fmt.Sprintf("Image %s is not active.", img.ID)
	}
	var net Network
	tenant := s.tenantNetworks()
	switch {
	case c.networksMode == "auto":
		if len(tenant) == 0 {
			return nil, http.StatusBadRequest, "Unable to automatically allocate a network for project " + s.projectID
		}
		net = tenant[0]
	case c.networksMode == "none":
	case len(c.networks) > 0:
		for i, n := range c.networks {
			if n.UUID == "" {
				return nil, http.StatusBadRequest, fmt.Sprintf("Port id %s could not be found.", n.Port)
			}
			found, ok := s.network(n.UUID)
			if !ok {
				return nil, http.StatusBadRequest, fmt.Sprintf("Network %s could not be found.", n.UUID)
			}
			if i == 0 {
				net = found
			}
		}
	default: // below 2.37 with no networks: every network the project has
		switch len(tenant) {
		case 0:
		case 1:
			net = tenant[0]
		default:
			return nil, http.StatusConflict, "Multiple possible networks found, use a Network ID to be more specific."
		}
	}
	if c.keyName != "" && !s.keypairs[c.keyName] {
		return nil, http.StatusBadRequest, "Invalid key_name provided."
	}
	for _, sg := range c.secGroups {
		if !s.secGroups[sg] {
			return nil, http.StatusBadRequest, fmt.Sprintf("Security group %s not found.", sg)
		}
	}
	if c.group != "" {
		if _, ok := s.serverGroup(c.group); !ok {
			return nil, http.StatusBadRequest, fmt.Sprintf("Instance group %s could not be found.", c.group)
		}
	}
	if len(c.metadata) > maxMetadataItems {
		return nil, http.StatusForbidden, metadataQuotaError()
	}
	if q := s.quota.Instances; q >= 0 && len(s.servers)+1 > q {
		return nil, http.StatusForbidden, fmt.Sprintf("Quota exceeded for instances: Requested 1, but already used %d of %d instances", len(s.servers), q)
	}
	address := ""
	if net.ID != "" {
		var err error
		if address, err = allocAddress(s.opts.HealthPorts); err != nil {
			return nil, http.StatusInternalServerError, err.Error()
		}
	}

	now := s.nextCreated()
	s.seq++
	srv := &server{
		id: uuid.NewString(), seq: s.seq, name: c.name,
		status: "BUILD", vmState: "building", taskState: "spawning",
		imageID: img.ID, flavorID: flavor.ID, network: net, address: address,
		az: c.az, pinnedAZ: c.az, keyName: c.keyName, secGroups: c.secGroups,
		metadata: c.metadata, tags: c.tags, description: c.description, hostname: c.hostname,
		userData: c.userData, group: c.group, created: now, updated: now, ports: s.opts.HealthPorts, createdBy: c.userAgent,
		bootTime: s.draw(s.opts.BootTime), healthDelay: s.draw(s.opts.HealthDelay),
	}
	srv.mac = "fa:16:3e:" + srv.id[0:2] + ":" + srv.id[2:4] + ":" + srv.id[4:6]
	if srv.az == "" {
		srv.az = "nova"
	}
	if len(srv.secGroups) == 0 {
		srv.secGroups = []string{"default"}
	}
	if srv.metadata == nil {
		srv.metadata = map[string]string{}
	}
	s.servers[srv.id] = srv
	s.order = append(s.order, srv)
	if address != "" {
		// Neutron's port for the server's one address.
		srv.portID = uuid.NewString()
		s.ports[srv.portID] = srv
	}

	_, zoneOut := s.failZones[srv.az]
	switch {
	case s.stickBoots > 0:
		s.stickBoots--
	case img.BootFails:
		s.bootAfter(srv, true)
	case zoneOut:
		s.failZones[srv.az]++
		s.bootAfter(srv, true)
	case s.failBoots > 0:
		s.failBoots--
		s.bootAfter(srv, true)
	default:
		s.bootAfter(srv, false)
	}
	return srv, 0, ""
}

// bootAfter finishes a server's boot after its boot time: at once for a
// zero boot time, so the server is ACTIVE by its first GET. Call with s.mu
// held.
func (s *Sim) bootAfter(srv *server, fail bool) {
	if srv.bootTime <= 0 {
		s.finishBoot(srv, fail)
		return
	}
	s.after(srv.bootTime, func() {
		s.mu.Lock()
		s.finishBoot(srv, fail)
		s.mu.Unlock()
	})
}

// sanitizeHostname is Nova's hostname for a server name: lower case,
// characters other than letters, digits, "-" and "." replaced, at most 63.
func sanitizeHostname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		case r == ' ' || r == '_':
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-.")
	if len(h) > 63 {
		h = strings.Trim(h[:63], "-.")
	}
	if h == "" {
		h = "server"
	}
	return h
}

// listFilter is a server list's query, as Nova reads it at a microversion.
type listFilter struct {
	name                               *regexp.Regexp
	ip                                 *regexp.Regexp
	statuses                           []string
	image, flavor                      string
	tags, tagsAny, notTags, notTagsAny []string
}

// novaStatuses are the statuses Nova's status filter knows.
var novaStatuses = []string{"ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD",
	"PAUSED", "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
	"SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE"}

// parseListFilter reads the filters a non-admin may use; every other
// query key is dropped silently, as Nova does. empty reports a status
// filter that can match nothing (Nova answers an empty list below 2.38).
func parseListFilter(q url.Values, v microversion) (f listFilter, empty bool, status int, msg string) {
	var err error
	if n := q.Get("name"); n != "" {
		if f.name, err = regexp.Compile(n); err != nil {
			return f, false, http.StatusBadRequest, "Invalid filter field: name."
		}
	}
	if n := q.Get("ip"); n != "" {
		if f.ip, err = regexp.Compile(n); err != nil {
			return f, false, http.StatusBadRequest, "Invalid filter field: ip."
		}
	}
	for _, st := range q["status"] {
		st = strings.ToUpper(st)
		if st == "DELETED" {
			return f, false, http.StatusForbidden, "Only administrators may list deleted instances"
		}
		if !slices.Contains(novaStatuses, st) {
			if v.atLeast(38) {
				return f, false, http.StatusBadRequest, "Invalid status value"
			}
			return f, true, 0, ""
		}
		f.statuses = append(f.statuses, st)
	}
	f.image, f.flavor = lastSegment(q.Get("image")), q.Get("flavor")
	if v.atLeast(26) {
		split := func(key string) []string {
			if s := q.Get(key); s != "" {
				return strings.Split(s, ",")
			}
			return nil
		}
		f.tags, f.tagsAny, f.notTags, f.notTagsAny = split("tags"), split("tags-any"), split("not-tags"), split("not-tags-any")
	}
	return f, false, 0, ""
}

func (f *listFilter) match(srv *server) bool {
	switch {
	case f.name != nil && !f.name.MatchString(srv.name),
		f.ip != nil && (srv.address == "" || !f.ip.MatchString(srv.address)),
		len(f.statuses) > 0 && !slices.Contains(f.statuses, srv.status),
		f.image != "" && f.image != srv.imageID,
		f.flavor != "" && f.flavor != srv.flavorID:
		return false
	}
	has := func(t string) bool { return slices.Contains(srv.tags, t) }
	for _, t := range f.tags {
		if !has(t) {
			return false
		}
	}
	if len(f.tagsAny) > 0 && !slices.ContainsFunc(f.tagsAny, has) {
		return false
	}
	if len(f.notTags) > 0 && !slices.ContainsFunc(f.notTags, func(t string) bool { return !has(t) }) {
		return false
	}
	return !slices.ContainsFunc(f.notTagsAny, has)
}

// listServers answers GET /servers and /servers/detail: newest first,
// filtered, a page at a time, with a next link whenever the page is full.
func (s *Sim) listServers(w http.ResponseWriter, r *http.Request, v microversion, detail bool) {
	q := r.URL.Query()
	limit := s.opts.NovaMaxLimit
	if vals := q["limit"]; len(vals) > 0 {
		l := vals[len(vals)-1]
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for query parameters limit. Value: %s. '%s' does not match '^[0-9]*$'", l, l))
			return
		}
		limit = min(n, s.opts.NovaMaxLimit)
	}
	f, empty, status, msg := parseListFilter(q, v)
	if status != 0 {
		novaError(w, status, msg)
		return
	}

	s.mu.Lock()
	start := len(s.order) - 1
	if marker := q.Get("marker"); marker != "" {
		seq, ok := uint64(0), false
		if srv, live := s.servers[marker]; live {
			seq, ok = srv.seq, true
		} else {
			seq, ok = s.gone[marker]
		}
		if !ok {
			s.mu.Unlock()
			novaError(w, http.StatusBadRequest, fmt.Sprintf("marker [%s] not found", marker))
			return
		}
		start = s.index(seq) - 1
	}
	var page []any
	last := ""
	for i := start; i >= 0 && len(page) < limit && !empty; i-- {
		srv := s.order[i]
		if !f.match(srv) {
			continue
		}
		if detail {
			page = append(page, s.serverJSON(srv, v, false))
		} else {
			page = append(page, serverBrief{ID: srv.id, Name: srv.name, Links: s.serverLinks(srv.id)})
		}
		last = srv.id
	}
	s.mu.Unlock()

	if page == nil {
		page = []any{}
	}
	body := map[string]any{"servers": page}
	if limit > 0 && len(page) == limit {
		next := url.Values{}
		maps.Copy(next, q)
		next.Set("marker", last)
		path := "/servers"
		if detail {
			path = "/servers/detail"
		}
		body["servers_links"] = []link{{Rel: "next", Href: s.endpoint + "/compute/v2.1" + path + "?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
}

// lookup answers 404 for a server that does not exist, or returns it.
// Call with s.mu held.
func (s *Sim) lookup(id string) (*server, string) {
	srv, ok := s.servers[id]
	if !ok {
		return nil, fmt.Sprintf("Instance %s could not be found.", id)
	}
	return srv, ""
}

func (s *Sim) showServer(w http.ResponseWriter, v microversion, id string) {
	s.mu.Lock()
	srv, msg := s.lookup(id)
	var body *serverJSON
	if srv != nil {
		body = s.serverJSON(srv, v, true)
	}
	s.mu.Unlock()
	if srv == nil {
		novaError(w, http.StatusNotFound, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": body})
}

// updateServer answers PUT /servers/{id}: name, description (2.19) and
// hostname (2.90).
func (s *Sim) updateServer(w http.ResponseWriter, r *http.Request, v microversion, id string) {
	var body map[string]map[string]json.RawMessage
	if err := decodeJSON(r, &body); err != nil || body["server"] == nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. 'server' is a required property")
		return
	}
	upd := body["server"]
	allowed := map[string]bool{"name": true, "OS-DCF:diskConfig": true, "accessIPv4": true, "accessIPv6": true,
		"description": v.atLeast(19), "hostname": v.atLeast(90)}
	for _, k := range slices.Sorted(maps.Keys(upd)) {
		if !allowed[k] {
			novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute server. Additional properties are not allowed ('%s' was unexpected)", k))
			return
		}
	}
	var name, hostname *string
	var desc *string
	descSet := false
	if r, ok := upd["name"]; ok {
		var n string
		if err := json.Unmarshal(r, &n); err != nil {
			novaError(w, http.StatusBadRequest, schemaError("name", r, "is not of type 'string'"))
			return
		}
		if msg := validName("name", n); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
		name = &n
	}
	if r, ok := upd["description"]; ok {
		descSet = true
		if string(r) != "null" {
			var d string
			if err := json.Unmarshal(r, &d); err != nil || len([]rune(d)) > 255 {
				novaError(w, http.StatusBadRequest, schemaError("description", r, "is not a valid description"))
				return
			}
			desc = &d
		}
	}
	if r, ok := upd["hostname"]; ok {
		var h string
		if err := json.Unmarshal(r, &h); err != nil || h == "" {
			novaError(w, http.StatusBadRequest, schemaError("hostname", r, "is not a valid hostname"))
			return
		}
		hostname = &h
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	var out *serverJSON
	if srv != nil {
		if name != nil {
			srv.name = *name
		}
		if descSet {
			srv.description = desc
		}
		if hostname != nil {
			srv.hostname = *hostname
		}
		srv.updated = time.Now().UTC()
		out = s.serverJSON(srv, v, true)
	}
	s.mu.Unlock()
	if srv == nil {
		novaError(w, http.StatusNotFound, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": out})
}

// deleteServer answers DELETE /servers/{id}: 204 at once, task state
// "deleting" until the drawn delete time has passed, then gone. A second
// delete while deleting is accepted again.
func (s *Sim) deleteServer(w http.ResponseWriter, id string) {
	s.mu.Lock()
	srv, msg := s.lookup(id)
	if srv != nil && !srv.deleting {
		srv.deleting, srv.taskState, srv.updated = true, "deleting", time.Now().UTC()
		s.after(s.draw(s.opts.DeleteTime), func() { s.removeServer(srv) })
	}
	s.mu.Unlock()
	if srv == nil {
		novaError(w, http.StatusNotFound, msg)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// invalidState is Nova's 409 for an action the server's state forbids.
func invalidState(action, id, attr, state string) string {
	return fmt.Sprintf("Cannot '%s' instance %s while it is in %s %s", action, id, attr, state)
}

// canChangeMetadata applies Nova's rule for metadata changes: vm_state
// active (or paused, suspended, stopped) and no task in progress. Call
// with s.mu held.
func canChangeMetadata(srv *server, action string) string {
	if !settled(srv.vmState) {
		return invalidState(action, srv.id, "vm_state", srv.vmState)
	}
	if srv.taskState != "" {
		return invalidState(action, srv.id, "task_state", srv.taskState)
	}
	return ""
}

// settled says whether a vm_state is one Nova takes metadata and tag
// changes in: active, paused, suspended, stopped.
func settled(vmState string) bool {
	switch vmState {
	case "active", "paused", "suspended", "stopped":
		return true
	}
	return false
}

// canChangeTags applies Nova's rule for tag changes: vm_state active (or
// paused, suspended, stopped), whatever the task. Call with s.mu held.
func canChangeTags(srv *server, action string) string {
	if !settled(srv.vmState) {
		return invalidState(action, srv.id, "vm_state", srv.vmState)
	}
	return ""
}

// serverAction answers POST /servers/{id}/action: os-stop, os-start,
// pause, unpause, suspend, resume and rebuild (actions.go), and
// createImage, which records a snapshot image in Glance, queued and then active
// after the snapshot time, while the server's task state is
// "image_snapshot", as a real hypervisor driver would (Nova's fake driver,
// by contrast, leaves the image queued for ever).
func (s *Sim) serverAction(w http.ResponseWriter, r *http.Request, v microversion, id string) {
	var body map[string]json.RawMessage
	if err := decodeJSON(r, &body); err != nil || len(body) != 1 {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return
	}
	for power := range powerActions {
		if _, ok := body[power]; ok {
			s.powerAction(w, id, power)
			return
		}
	}
	if raw, ok := body["rebuild"]; ok {
		s.rebuild(w, v, id, raw)
		return
	}
	raw, ok := body["createImage"]
	if !ok {
		for k := range body {
			novaError(w, http.StatusBadRequest, fmt.Sprintf("There is no such action: %s", k))
		}
		return
	}
	var ci struct {
		Name     *string         `json:"name"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &ci); err != nil || ci.Name == nil {
		novaError(w, http.StatusBadRequest, schemaError("createImage", raw, "'name' is a required property"))
		return
	}
	if msg := validName("name", *ci.Name); msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	props := map[string]string{}
	if ci.Metadata != nil {
		md, msg := parseMetadata("metadata", ci.Metadata)
		if msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
		props = md
	}

	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	var img *image
	if srv != nil {
		status, msg = http.StatusConflict, ""
		switch {
		case srv.vmState != "active" && srv.vmState != "stopped":
			msg = invalidState("createImage", id, "vm_state", srv.vmState)
		case srv.taskState != "":
			msg = invalidState("createImage", id, "task_state", srv.taskState)
		}
	}
	if srv != nil && msg == "" {
		if base, ok := s.images[srv.imageID]; ok {
			for k, val := range base.Properties {
				if _, set := props[k]; !set {
					props[k] = val
				}
			}
		}
		props["image_type"], props["instance_uuid"], props["base_image_ref"] = "snapshot", srv.id, srv.imageID
		props["owner_project_name"], props["owner_user_name"] = s.opts.ProjectName, s.opts.Username
		img = s.storeImage(Image{Name: *ci.Name, Status: "queued", Properties: props, Visibility: "private"})
		srv.taskState, srv.updated = "image_snapshot", time.Now().UTC()
		s.after(s.draw(s.opts.SnapshotTime), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			now := time.Now().UTC()
			if s.images[img.ID] == img {
				img.Status, img.updated = "active", now
				img.setData([]byte("snapshot of " + srv.id))
			}
			if s.servers[srv.id] == srv && srv.taskState == "image_snapshot" {
				srv.taskState, srv.updated = "", now
			}
		})
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	if !v.atLeast(45) {
		w.Header().Set("Location", s.endpoint+"/image/v2/images/"+img.ID)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"image_id": img.ID})
}

// serverMetadata answers /servers/{id}/metadata: GET, POST (merge) and
// PUT (replace).
func (s *Sim) serverMetadata(w http.ResponseWriter, r *http.Request, id string) {
	var md map[string]string
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		var body map[string]json.RawMessage
		if err := decodeJSON(r, &body); err != nil || body == nil {
			novaError(w, http.StatusBadRequest, "Malformed request body")
			return
		}
		for k := range body {
			if k != "metadata" {
				novaError(w, http.StatusBadRequest, schemaError("root", "", fmt.Sprintf("Additional properties are not allowed ('%s' was unexpected)", k)))
				return
			}
		}
		raw, ok := body["metadata"]
		if !ok {
			novaError(w, http.StatusBadRequest, schemaError("root", "", "'metadata' is a required property"))
			return
		}
		var msg string
		if md, msg = parseMetadata("metadata", raw); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	default:
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	var out map[string]string
	if srv != nil {
		status, msg, out = s.changeMetadata(srv, r.Method, md)
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"metadata": out})
}

// changeMetadata applies a metadata GET, POST or PUT. Call with s.mu held.
func (s *Sim) changeMetadata(srv *server, method string, md map[string]string) (int, string, map[string]string) {
	if method == http.MethodGet || method == http.MethodHead {
		return http.StatusOK, "", srv.metadata
	}
	if msg := canChangeMetadata(srv, "update metadata"); msg != "" {
		return http.StatusConflict, msg, nil
	}
	next := md
	if method == http.MethodPost {
		next = maps.Clone(srv.metadata)
		maps.Copy(next, md)
	}
	if len(next) > maxMetadataItems {
		return http.StatusForbidden, metadataQuotaError(), nil
	}
	srv.metadata, srv.updated = next, time.Now().UTC()
	return http.StatusOK, "", next
}

// serverMetadatum answers /servers/{id}/metadata/{key}: GET, PUT, DELETE.
func (s *Sim) serverMetadatum(w http.ResponseWriter, r *http.Request, id, key string) {
	var value string
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodDelete:
	case http.MethodPut:
		var body map[string]json.RawMessage
		if err := decodeJSON(r, &body); err != nil || body["meta"] == nil {
			novaError(w, http.StatusBadRequest, schemaError("root", "", "'meta' is a required property"))
			return
		}
		meta, msg := parseMetadata("meta", body["meta"])
		if msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
		if len(meta) != 1 {
			novaError(w, http.StatusBadRequest, schemaError("meta", body["meta"], fmt.Sprintf("%s has too many properties", body["meta"])))
			return
		}
		v, ok := meta[key]
		if !ok {
			novaError(w, http.StatusBadRequest, "Request body and URI mismatch")
			return
		}
		value = v
	default:
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	var out map[string]string
	if srv != nil {
		status, msg = http.StatusOK, ""
		v, has := srv.metadata[key]
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if !has {
				status, msg = http.StatusNotFound, "Metadata item was not found"
			}
			out = map[string]string{key: v}
		case http.MethodPut:
			status, msg, _ = s.changeMetadata(srv, http.MethodPost, map[string]string{key: value})
			out = map[string]string{key: value}
		case http.MethodDelete:
			switch {
			case !has:
				status, msg = http.StatusNotFound, "Metadata item was not found"
			default:
				if m := canChangeMetadata(srv, "delete metadata"); m != "" {
					status, msg = http.StatusConflict, m
					break
				}
				next := maps.Clone(srv.metadata)
				delete(next, key)
				srv.metadata, srv.updated = next, time.Now().UTC()
				status = http.StatusNoContent
			}
		}
	}
	s.mu.Unlock()
	novaAnswer(w, status, msg, map[string]any{"meta": out})
}

// novaAnswer writes Nova's error shape when msg is set, an empty 204, or
// body.
func novaAnswer(w http.ResponseWriter, status int, msg string, body any) {
	switch {
	case msg != "":
		novaError(w, status, msg)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	default:
		writeJSON(w, status, body)
	}
}

// serverTags answers /servers/{id}/tags (2.26): GET, PUT (replace all),
// DELETE (remove all).
func (s *Sim) serverTags(w http.ResponseWriter, r *http.Request, id string) {
	var tags []string
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodDelete:
	case http.MethodPut:
		var body map[string]json.RawMessage
		if err := decodeJSON(r, &body); err != nil || body["tags"] == nil {
			novaError(w, http.StatusBadRequest, schemaError("root", "", "'tags' is a required property"))
			return
		}
		var msg string
		if tags, msg = parseTags(body["tags"]); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	default:
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	var out []string
	if srv != nil {
		status, msg = http.StatusOK, ""
		switch r.Method {
		case http.MethodPut:
			if msg = canChangeTags(srv, "update tags"); msg == "" {
				var uniq []string
				for _, t := range tags {
					if !slices.Contains(uniq, t) {
						uniq = append(uniq, t)
					}
				}
				srv.tags = uniq
			}
		case http.MethodDelete:
			if msg = canChangeTags(srv, "delete tags"); msg == "" {
				srv.tags, status = nil, http.StatusNoContent
			}
		}
		if msg != "" {
			status = http.StatusConflict
		}
		out = srv.tags
	}
	s.mu.Unlock()
	if out == nil {
		out = []string{}
	}
	novaAnswer(w, status, msg, map[string]any{"tags": out})
}

// serverTag answers /servers/{id}/tags/{tag} (2.26): GET (204 or 404),
// PUT (201 added, 204 already there), DELETE.
func (s *Sim) serverTag(w http.ResponseWriter, r *http.Request, id, tag string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
	default:
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	s.mu.Lock()
	srv, msg := s.lookup(id)
	status := http.StatusNotFound
	if srv != nil {
		status, msg = http.StatusNoContent, ""
		has := slices.Contains(srv.tags, tag)
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if !has {
				status, msg = http.StatusNotFound, fmt.Sprintf("Server %s has no tag '%s'", id, tag)
			}
		case http.MethodPut:
			switch {
			case canChangeTags(srv, "update tag") != "":
				status, msg = http.StatusConflict, canChangeTags(srv, "update tag")
			case validTag(tag) != "":
				status, msg = http.StatusBadRequest, fmt.Sprintf("Tag '%s' is invalid. It must be a non empty string without characters '/' and ','. Validation error message: %s", tag, validTag(tag))
			case len(srv.tags) >= maxTags:
				status, msg = http.StatusBadRequest, fmt.Sprintf("The number of tags exceeded the per-server limit %d", maxTags)
			case !has:
				srv.tags = append(slices.Clone(srv.tags), tag)
				srv.updated = time.Now().UTC()
				status = http.StatusCreated
			}
		case http.MethodDelete:
			switch {
			case canChangeTags(srv, "delete tag") != "":
				status, msg = http.StatusConflict, canChangeTags(srv, "delete tag")
			case !has:
				status, msg = http.StatusNotFound, fmt.Sprintf("Instance %s has no tag '%s'", id, tag)
			default:
				srv.tags = slices.DeleteFunc(slices.Clone(srv.tags), func(t string) bool { return t == tag })
				srv.updated = time.Now().UTC()
			}
		}
	}
	s.mu.Unlock()
	if msg != "" {
		novaError(w, status, msg)
		return
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", s.endpoint+"/compute/v2.1/servers/"+id+"/tags/"+url.PathEscape(tag))
	}
	w.WriteHeader(status)
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

type link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

type nameJSON struct {
	Name string `json:"name"`
}

type serverBrief struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Links []link `json:"links"`
}

type addressJSON struct {
	Addr    string `json:"addr"`
	Version int    `json:"version"`
	Type    string `json:"OS-EXT-IPS:type"`
	MAC     string `json:"OS-EXT-IPS-MAC:mac_addr"`
}

type faultJSON struct {
	Code    int    `json:"code"`
	Created string `json:"created"`
	Message string `json:"message"`
}

// serverJSON is Nova's server document. Fields that appear only from some
// microversion on are omitted when empty; jsonNull makes one present but
// null.
type serverJSON struct {
	ID             string                   `json:"id"`
	Name           string                   `json:"name"`
	Status         string                   `json:"status"`
	TenantID       string                   `json:"tenant_id"`
	UserID         string                   `json:"user_id"`
	Metadata       map[string]string        `json:"metadata"`
	HostID         string                   `json:"hostId"`
	Image          any                      `json:"image"`
	Flavor         any                      `json:"flavor"`
	Created        string                   `json:"created"`
	Updated        string                   `json:"updated"`
	Addresses      map[string][]addressJSON `json:"addresses"`
	AccessIPv4     string                   `json:"accessIPv4"`
	AccessIPv6     string                   `json:"accessIPv6"`
	Links          []link                   `json:"links"`
	DiskConfig     string                   `json:"OS-DCF:diskConfig"`
	Progress       *int                     `json:"progress,omitempty"`
	AZ             string                   `json:"OS-EXT-AZ:availability_zone"`
	ConfigDrive    string                   `json:"config_drive"`
	KeyName        *string                  `json:"key_name"`
	LaunchedAt     *string                  `json:"OS-SRV-USG:launched_at"`
	TerminatedAt   *string                  `json:"OS-SRV-USG:terminated_at"`
	SecurityGroups []nameJSON               `json:"security_groups,omitempty"`
	TaskState      *string                  `json:"OS-EXT-STS:task_state"`
	VMState        string                   `json:"OS-EXT-STS:vm_state"`
	PowerState     int                      `json:"OS-EXT-STS:power_state"`
	Volumes        []any                    `json:"os-extended-volumes:volumes_attached"`
	Fault          *faultJSON               `json:"fault,omitempty"`
	Locked         *bool                    `json:"locked,omitempty"`
	Description    json.RawMessage          `json:"description,omitempty"`
	Tags           *[]string                `json:"tags,omitempty"`
	TrustedCerts   json.RawMessage          `json:"trusted_image_certificates,omitempty"`
	ServerGroups   *[]string                `json:"server_groups,omitempty"`
	LockedReason   json.RawMessage          `json:"locked_reason,omitempty"`
	Hostname       *string                  `json:"OS-EXT-SRV-ATTR:hostname,omitempty"`
	PinnedAZ       json.RawMessage          `json:"pinned_availability_zone,omitempty"`
	SchedulerHints *map[string]any          `json:"scheduler_hints,omitempty"`
}

var (
	jsonNull = json.RawMessage("null")
	zero     = 0
	falseVal = false
)

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func (s *Sim) serverLinks(id string) []link {
	return []link{
		{Rel: "self", Href: s.endpoint + "/compute/v2.1/servers/" + id},
		{Rel: "bookmark", Href: s.endpoint + "/compute/servers/" + id},
	}
}

// serverJSON renders a server as Nova does at microversion v; show is the
// single-server view (which alone carries server_groups). Call with s.mu
// held; the result may be encoded after the lock is released.
func (s *Sim) serverJSON(srv *server, v microversion, show bool) *serverJSON {
	out := &serverJSON{
		ID: srv.id, Name: srv.name, Status: srv.status, TenantID: s.projectID, UserID: s.userID,
		Metadata: srv.metadata, Created: srv.created.Format(novaTime), Updated: srv.updated.Format(novaTime),
		Addresses: map[string][]addressJSON{}, Links: s.serverLinks(srv.id), DiskConfig: "MANUAL",
		AZ: srv.az, SecurityGroups: make([]nameJSON, len(srv.secGroups)),
		VMState: srv.vmState, PowerState: srv.powerState, Volumes: s.volumesAttached(srv, v),
	}
	if srv.status != "ERROR" {
		// Scheduled to a host: Nova's hostId hashes the project and host.
		sum := sha256.Sum224([]byte(s.projectID + "sim-compute-1"))
		out.HostID = hex.EncodeToString(sum[:])
	}
	image := map[string]any{"id": srv.imageID, "links": []link{{Rel: "bookmark", Href: s.endpoint + "/compute/images/" + srv.imageID}}}
	if v.atLeast(98) {
		props := map[string]string{}
		if img, ok := s.images[srv.imageID]; ok {
			props = img.Properties
		}
		image["properties"] = props
	}
	out.Image = image
	f, _ := s.flavor(srv.flavorID)
	if v.atLeast(47) {
		out.Flavor = map[string]any{"vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk, "ephemeral": 0, "swap": 0,
			"original_name": f.Name, "extra_specs": map[string]string{}}
	} else {
		out.Flavor = map[string]any{"id": srv.flavorID, "links": []link{{Rel: "bookmark", Href: s.endpoint + "/compute/flavors/" + srv.flavorID}}}
	}
	if srv.vmState != "building" && srv.network.Name != "" {
		// Nova hides addresses while the server is building.
		out.Addresses[srv.network.Name] = []addressJSON{{Addr: srv.address, Version: 4, Type: "fixed", MAC: srv.mac}}
	}
	if srv.status == "ACTIVE" || srv.status == "BUILD" {
		out.Progress = &zero
	}
	if srv.keyName != "" {
		k := srv.keyName
		out.KeyName = &k
	}
	if !srv.launchedAt.IsZero() {
		t := srv.launchedAt.Format(novaMicroTime)
		out.LaunchedAt = &t
	}
	for i, n := range srv.secGroups {
		out.SecurityGroups[i] = nameJSON{n}
	}
	if srv.taskState != "" {
		t := srv.taskState
		out.TaskState = &t
	}
	if srv.status == "ERROR" && srv.fault != "" {
		out.Fault = &faultJSON{Code: 500, Created: srv.faultAt.Format(novaTime), Message: srv.fault}
	}
	if v.atLeast(9) {
		out.Locked = &falseVal
	}
	if v.atLeast(19) {
		out.Description = jsonNull
		if srv.description != nil {
			out.Description = jsonString(*srv.description)
		}
	}
	if v.atLeast(26) {
		tags := srv.tags
		if tags == nil {
			tags = []string{}
		}
		out.Tags = &tags
	}
	if v.atLeast(63) {
		out.TrustedCerts = jsonNull
	}
	if v.atLeast(71) && show {
		groups := []string{}
		if srv.group != "" {
			groups = append(groups, srv.group)
		}
		out.ServerGroups = &groups
	}
	if v.atLeast(73) {
		out.LockedReason = jsonNull
	}
	if v.atLeast(90) {
		h := srv.hostname
		out.Hostname = &h
	}
	if v.atLeast(96) {
		out.PinnedAZ = jsonNull
		if srv.pinnedAZ != "" {
			out.PinnedAZ = jsonString(srv.pinnedAZ)
		}
	}
	if v.atLeast(100) {
		hints := map[string]any{}
		if srv.group != "" {
			hints["group"] = srv.group
		}
		out.SchedulerHints = &hints
	}
	return out
}
