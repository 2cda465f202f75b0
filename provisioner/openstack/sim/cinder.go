package sim

import (
	"encoding/json"
	"errors"
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

// Cinder (block storage v3) under /volume/v3/{project_id}: volumes,
// their metadata and snapshots, with the statuses a real Cinder leads
// them through. Attaching is Nova's business (os-volume_attachments, in
// volumeattach.go): Cinder here only records what Nova did.
//
// Wrong states are refused the way the development cloud's Cinder (Zed)
// refuses them, with 400 and Cinder's "Invalid volume" message, not 409:
// the contract suite compares the two.

// Volume is a simulated volume as tests see it: a copy, safe to keep.
type Volume struct {
	ID, Name, Status string
	Size             int
	Bootable         bool
	Metadata         map[string]string
	// ServerID and Device name the server the volume is attached (or
	// being attached) to; "" when it is not.
	ServerID, Device string
	Created          time.Time
}

// VolumeSpec is a volume AddVolume creates.
type VolumeSpec struct {
	Name     string
	Size     int // GiB; 0 means 1
	Bootable bool
	Metadata map[string]string
	// Status is the volume's status; "" means available. "error" makes a
	// volume that failed to create.
	Status string
}

// VolumeSnapshot is a simulated volume snapshot as tests see it.
type VolumeSnapshot struct {
	ID, Name, VolumeID, Status string
	Size                       int
	Metadata                   map[string]string
	Created                    time.Time
}

// volume is the simulator's record of a volume, guarded by Sim.mu.
type volume struct {
	id, name          string
	description       *string
	status            string
	size              int
	bootable          bool
	metadata          map[string]string
	created, updated  time.Time
	serverID, device  string // the attachment, reserved from the attach request on
	attachmentID      string
	attachedAt        time.Time
	history           int // index in Sim.attachments of the current attachment; -1 without
	deleting, deleted bool
}

// volSnapshot is the simulator's record of a volume snapshot.
type volSnapshot struct {
	id, name         string
	description      *string
	volumeID, status string
	size             int
	metadata         map[string]string
	created, updated time.Time
}

// cinderState is Cinder's part of the simulator, guarded by Sim.mu.
type cinderState struct {
	volumes   map[string]*volume
	volOrder  []*volume // by creation
	snapshots map[string]*volSnapshot
	snapOrder []*volSnapshot
	// attachments is every attachment ever made, in the order asked.
	attachments []AttachmentRecord
	refused     []RefusedAttachment
	failSnaps   int
}

func (c *cinderState) init() {
	c.volumes = map[string]*volume{}
	c.snapshots = map[string]*volSnapshot{}
}

// cinderMaxMicroversion is the largest volume microversion the simulator
// answers (Zed's).
var cinderMaxMicroversion = microversion{3, 70}

// volumeMicroversion reads OpenStack-API-Version: volume 3.N (or the
// legacy header); "" means 3.0. ok is false after answering a malformed or
// unsupported version.
func (s *Sim) volumeMicroversion(w http.ResponseWriter, r *http.Request) (microversion, bool) {
	asked := requestedVolumeMicroversion(r)
	v := microversion{3, 0}
	switch {
	case asked == "":
	case strings.EqualFold(asked, "latest"):
		v = cinderMaxMicroversion
	default:
		var err error
		if v, err = parseMicroversion(asked); err != nil || v.major != 3 || v.after(cinderMaxMicroversion) {
			novaError(w, http.StatusNotAcceptable, fmt.Sprintf("Version %s is not supported by the API. Minimum is 3.0 and maximum is %s.", asked, cinderMaxMicroversion))
			return v, false
		}
	}
	w.Header().Set("OpenStack-API-Version", "volume "+v.String())
	w.Header().Set("Vary", "OpenStack-API-Version")
	return v, true
}

// requestedVolumeMicroversion reads the volume microversion a request
// asks for, "" when none.
func requestedVolumeMicroversion(r *http.Request) string {
	for _, h := range r.Header.Values("OpenStack-API-Version") {
		for part := range strings.SplitSeq(h, ",") {
			svc, v, ok := strings.Cut(strings.TrimSpace(part), " ")
			if ok && (strings.EqualFold(svc, "volume") || strings.EqualFold(svc, "block-storage")) {
				return strings.TrimSpace(v)
			}
		}
	}
	return strings.TrimSpace(r.Header.Get("X-OpenStack-Volume-API-Version"))
}

// atLeast3 compares a volume microversion with 3.minor.
func (v microversion) atLeast3(minor int) bool {
	return v.major > 3 || v.major == 3 && v.minor >= minor
}

func (s *Sim) volumeVersion() map[string]any {
	return map[string]any{
		"id": "v3.0", "status": "CURRENT", "version": cinderMaxMicroversion.String(), "min_version": "3.0",
		"updated": "2023-08-31T00:00:00Z",
		"links":   []any{map[string]any{"rel": "self", "href": s.endpoint + "/volume/v3/"}},
		"media-types": []any{map[string]any{"base": "application/json",
			"type": "application/vnd.openstack.volume+json;version=3"}},
	}
}

// serveVolumeVersions answers Cinder's version documents, which need no
// token.
func (s *Sim) serveVolumeVersions(w http.ResponseWriter, r *http.Request, sub string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	if sub == "" || sub == "/" {
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": []any{s.volumeVersion()}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{s.volumeVersion()}})
}

var (
	reVolume         = regexp.MustCompile(`^/volumes/([^/]+)$`)
	reVolumeMetadata = regexp.MustCompile(`^/volumes/([^/]+)/metadata$`)
	reSnapshot       = regexp.MustCompile(`^/snapshots/([^/]+)$`)
)

// serveVolume routes the authenticated Cinder API; sub starts below
// /volume.
func (s *Sim) serveVolume(w http.ResponseWriter, r *http.Request, sub string) {
	rest, ok := strings.CutPrefix(sub, "/v3/"+s.projectID)
	if !ok {
		novaError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	v, ok := s.volumeMicroversion(w, r)
	if !ok {
		return
	}
	rest = strings.TrimSuffix(rest, "/")
	m := r.Method
	get := m == http.MethodGet || m == http.MethodHead
	notAllowed := func() {
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
	}
	var p []string
	match := func(re *regexp.Regexp) bool {
		p = re.FindStringSubmatch(rest)
		return p != nil
	}
	switch {
	case rest == "/volumes" && m == http.MethodPost:
		s.createVolume(w, r)
	case rest == "/volumes" || rest == "/volumes/detail":
		if !get {
			notAllowed()
			return
		}
		s.listVolumes(w, r, rest == "/volumes/detail")
	case match(reVolume):
		switch {
		case get:
			s.showVolume(w, p[1])
		case m == http.MethodDelete:
			s.deleteVolume(w, p[1])
		default:
			notAllowed()
		}
	case match(reVolumeMetadata):
		s.volumeMetadata(w, r, p[1])
	case rest == "/snapshots" && m == http.MethodPost:
		s.createVolumeSnapshot(w, r)
	case rest == "/snapshots" || rest == "/snapshots/detail":
		if !get {
			notAllowed()
			return
		}
		s.listVolumeSnapshots(w, r, v, rest == "/snapshots/detail")
	case match(reSnapshot):
		switch {
		case get:
			s.showVolumeSnapshot(w, p[1])
		case m == http.MethodDelete:
			s.deleteVolumeSnapshot(w, p[1])
		default:
			notAllowed()
		}
	default:
		novaError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

func volumeNotFound(id string) string { return fmt.Sprintf("Volume %s could not be found.", id) }

func (s *Sim) volumeLinks(kind, id string) []link {
	return []link{
		{Rel: "self", Href: s.endpoint + "/volume/v3/" + s.projectID + "/" + kind + "/" + id},
		{Rel: "bookmark", Href: s.endpoint + "/volume/" + s.projectID + "/" + kind + "/" + id},
	}
}

// volumeJSON renders a volume as Cinder's detail view does. Call with
// s.mu held.
func (s *Sim) volumeJSON(vol *volume) map[string]any {
	attachments := []any{}
	if vol.serverID != "" && (vol.status == "in-use" || vol.status == "detaching") {
		attachments = append(attachments, map[string]any{
			"id": vol.id, "attachment_id": vol.attachmentID, "volume_id": vol.id, "server_id": vol.serverID,
			"host_name": nil, "device": vol.device, "attached_at": vol.attachedAt.Format(novaMicroTime),
		})
	}
	var desc any
	if vol.description != nil {
		desc = *vol.description
	}
	return map[string]any{
		"id": vol.id, "status": vol.status, "size": vol.size, "availability_zone": "nova",
		"created_at": vol.created.Format(novaMicroTime), "updated_at": vol.updated.Format(novaMicroTime),
		"name": vol.name, "description": desc, "volume_type": "__DEFAULT__", "snapshot_id": nil,
		"source_volid": nil, "metadata": vol.metadata, "links": s.volumeLinks("volumes", vol.id),
		"user_id": s.userID, "bootable": strconv.FormatBool(vol.bootable), "encrypted": false,
		"replication_status": nil, "consistencygroup_id": nil, "multiattach": false,
		"attachments": attachments, "os-vol-tenant-attr:tenant_id": s.projectID,
	}
}

func (s *Sim) snapshotJSON(snap *volSnapshot) map[string]any {
	progress := "0%"
	if snap.status == "available" {
		progress = "100%"
	}
	var desc any
	if snap.description != nil {
		desc = *snap.description
	}
	return map[string]any{
		"id": snap.id, "created_at": snap.created.Format(novaMicroTime), "updated_at": snap.updated.Format(novaMicroTime),
		"name": snap.name, "description": desc, "volume_id": snap.volumeID, "status": snap.status,
		"size": snap.size, "metadata": snap.metadata,
		"os-extended-snapshot-attributes:progress":   progress,
		"os-extended-snapshot-attributes:project_id": s.projectID,
	}
}

// cinderBadRequest is Cinder's 400 with its "Invalid volume" wording.
func invalidVolume(reason string) string { return "Invalid volume: " + reason }

// parseCinderMetadata reads a metadata object: string keys of 1 to 255
// characters, string values of at most 255.
func parseCinderMetadata(raw json.RawMessage) (map[string]string, string) {
	if raw == nil || string(raw) == "null" {
		return map[string]string{}, ""
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, "Invalid input received: metadata must be a dict"
	}
	out := make(map[string]string, len(m))
	for k, val := range m {
		str, ok := val.(string)
		if !ok || k == "" || len(k) > 255 || len(str) > 255 {
			return nil, fmt.Sprintf("Invalid input for field/attribute metadata. Value: %s.", raw)
		}
		out[k] = str
	}
	return out, ""
}

func (s *Sim) createVolume(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Volume *struct {
			Name        *string         `json:"name"`
			Description *string         `json:"description"`
			Size        json.Number     `json:"size"`
			Metadata    json.RawMessage `json:"metadata"`
			SnapshotID  *string         `json:"snapshot_id"`
			SourceVolID *string         `json:"source_volid"`
			ImageRef    *string         `json:"imageRef"`
		} `json:"volume"`
	}
	if err := decodeJSON(r, &body); err != nil || body.Volume == nil {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute volume. 'volume' is a required property")
		return
	}
	req := body.Volume
	if req.SnapshotID != nil || req.SourceVolID != nil || req.ImageRef != nil {
		novaError(w, http.StatusBadRequest, "The simulator creates empty volumes only")
		return
	}
	size, err := strconv.Atoi(req.Size.String())
	if err != nil || size < 1 {
		novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute size. Value: %s.", req.Size))
		return
	}
	md, msg := parseCinderMetadata(req.Metadata)
	if msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	name := ""
	if req.Name != nil {
		name = *req.Name
	}
	s.mu.Lock()
	vol := s.storeVolume(VolumeSpec{Name: name, Size: size, Metadata: md, Status: "creating"})
	vol.description = req.Description
	s.after(s.draw(s.opts.VolumeTime), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cinder.volumes[vol.id] == vol && vol.status == "creating" {
			vol.status, vol.updated = "available", time.Now().UTC()
		}
	})
	out := s.volumeJSON(vol)
	s.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]any{"volume": out})
}

// storeVolume records a new volume. Call with s.mu held.
func (s *Sim) storeVolume(spec VolumeSpec) *volume {
	now := time.Now().UTC()
	if !now.After(s.lastVolume) {
		now = s.lastVolume.Add(time.Microsecond)
	}
	s.lastVolume = now
	md := maps.Clone(spec.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	vol := &volume{id: uuid.NewString(), name: spec.Name, status: spec.Status, size: max(spec.Size, 1),
		bootable: spec.Bootable, metadata: md, created: now, updated: now, history: -1}
	s.cinder.volumes[vol.id] = vol
	s.cinder.volOrder = append(s.cinder.volOrder, vol)
	return vol
}

// cinderFilter is a list's metadata, name and status filters.
type cinderFilter struct {
	metadata     map[string]string
	name, status string
	volumeID     string
}

func (f cinderFilter) match(name, status, volumeID string, md map[string]string) bool {
	if f.name != "" && f.name != name || f.status != "" && f.status != status || f.volumeID != "" && f.volumeID != volumeID {
		return false
	}
	for k, v := range f.metadata {
		if got, ok := md[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// parseCinderFilter reads a list's query; withMetadata is false where
// Cinder drops the metadata filter (snapshots below 3.22).
func parseCinderFilter(q url.Values, withMetadata bool) (cinderFilter, string) {
	f := cinderFilter{name: q.Get("name"), status: q.Get("status"), volumeID: q.Get("volume_id")}
	if raw := q.Get("metadata"); raw != "" && withMetadata {
		md, err := parseDictLiteral(raw)
		if err != nil {
			return f, fmt.Sprintf("Invalid input received: metadata filter %s: %v", raw, err)
		}
		f.metadata = md
	}
	return f, ""
}

// parseDictLiteral reads a dict of strings written as JSON or as the
// Python literal Cinder evaluates ({'k': 'v'}, which gophercloud sends).
func parseDictLiteral(s string) (map[string]string, error) {
	var out map[string]string
	if json.Unmarshal([]byte(s), &out) == nil && out != nil {
		return out, nil
	}
	out = map[string]string{}
	rs := []rune(strings.TrimSpace(s))
	i := 0
	skip := func() {
		for i < len(rs) && (rs[i] == ' ' || rs[i] == '\t') {
			i++
		}
	}
	str := func() (string, error) {
		skip()
		if i >= len(rs) || rs[i] != '\'' && rs[i] != '"' {
			return "", errors.New("a quoted string was expected")
		}
		q := rs[i]
		i++
		var b strings.Builder
		for ; i < len(rs) && rs[i] != q; i++ {
			if rs[i] == '\\' && i+1 < len(rs) {
				i++
			}
			b.WriteRune(rs[i])
		}
		if i >= len(rs) {
			return "", errors.New("unterminated string")
		}
		i++
		return b.String(), nil
	}
	expect := func(r rune) error {
		skip()
		if i >= len(rs) || rs[i] != r {
			return fmt.Errorf("%q was expected", r)
		}
		i++
		return nil
	}
	if err := expect('{'); err != nil {
		return nil, err
	}
	skip()
	if i < len(rs) && rs[i] == '}' {
		i++
	} else {
		for {
			k, err := str()
			if err != nil {
				return nil, err
			}
			if err := expect(':'); err != nil {
				return nil, err
			}
			v, err := str()
			if err != nil {
				return nil, err
			}
			out[k] = v
			skip()
			if i < len(rs) && rs[i] == ',' {
				i++
				continue
			}
			if err := expect('}'); err != nil {
				return nil, err
			}
			break
		}
	}
	skip()
	if i != len(rs) {
		return nil, errors.New("trailing characters")
	}
	return out, nil
}

// cinderPage reads limit and marker; Cinder's lists are newest first.
func cinderPage(q url.Values) (limit int, marker string, msg string) {
	limit = 1000
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return 0, "", fmt.Sprintf("Invalid input received: limit %s", l)
		}
		limit = min(n, 1000)
	}
	return limit, q.Get("marker"), ""
}

// nextLink is a list's next link when the page is full.
func (s *Sim) nextLink(kind string, q url.Values, last string) []link {
	next := url.Values{}
	maps.Copy(next, q)
	next.Set("marker", last)
	return []link{{Rel: "next", Href: s.endpoint + "/volume/v3/" + s.projectID + "/" + kind + "?" + next.Encode()}}
}

func (s *Sim) listVolumes(w http.ResponseWriter, r *http.Request, detail bool) {
	q := r.URL.Query()
	f, msg := parseCinderFilter(q, true)
	limit, marker, msg2 := cinderPage(q)
	if msg == "" {
		msg = msg2
	}
	if msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	start := len(s.cinder.volOrder) - 1
	if marker != "" {
		i := slices.IndexFunc(s.cinder.volOrder, func(v *volume) bool { return v.id == marker })
		if i < 0 {
			s.mu.Unlock()
			novaError(w, http.StatusNotFound, fmt.Sprintf("Marker volume %s could not be found.", marker))
			return
		}
		start = i - 1
	}
	page := []any{}
	last := ""
	for i := start; i >= 0 && len(page) < limit; i-- {
		vol := s.cinder.volOrder[i]
		if !f.match(vol.name, vol.status, "", vol.metadata) {
			continue
		}
		if detail {
			page = append(page, s.volumeJSON(vol))
		} else {
			page = append(page, map[string]any{"id": vol.id, "name": vol.name, "links": s.volumeLinks("volumes", vol.id)})
		}
		last = vol.id
	}
	s.mu.Unlock()
	body := map[string]any{"volumes": page}
	if limit > 0 && len(page) == limit {
		kind := "volumes"
		if detail {
			kind = "volumes/detail"
		}
		body["volumes_links"] = s.nextLink(kind, q, last)
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) showVolume(w http.ResponseWriter, id string) {
	s.mu.Lock()
	vol, ok := s.cinder.volumes[id]
	var out map[string]any
	if ok {
		out = s.volumeJSON(vol)
	}
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, volumeNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"volume": out})
}

// deleteVolume refuses, as Cinder does, a volume that is attached, busy
// or has snapshots.
func (s *Sim) deleteVolume(w http.ResponseWriter, id string) {
	s.mu.Lock()
	vol, ok := s.cinder.volumes[id]
	msg := ""
	if ok {
		hasSnaps := slices.ContainsFunc(s.cinder.snapOrder, func(sn *volSnapshot) bool { return sn.volumeID == id })
		switch {
		case vol.status == "deleting":
		case vol.status != "available" && vol.status != "error" || vol.serverID != "" || hasSnaps:
			msg = invalidVolume("Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.")
		default:
			vol.status, vol.updated = "deleting", time.Now().UTC()
			s.after(s.draw(s.opts.VolumeTime), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.cinder.volumes[vol.id] == vol {
					delete(s.cinder.volumes, vol.id)
					s.cinder.volOrder = slices.DeleteFunc(s.cinder.volOrder, func(v *volume) bool { return v == vol })
				}
			})
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		novaError(w, http.StatusNotFound, volumeNotFound(id))
	case msg != "":
		novaError(w, http.StatusBadRequest, msg)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// volumeMetadata answers /volumes/{id}/metadata: GET, POST (merge), PUT
// (replace).
func (s *Sim) volumeMetadata(w http.ResponseWriter, r *http.Request, id string) {
	var md map[string]string
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		var body map[string]json.RawMessage
		if err := decodeJSON(r, &body); err != nil || body["metadata"] == nil {
			novaError(w, http.StatusBadRequest, "Malformed request body")
			return
		}
		var msg string
		if md, msg = parseCinderMetadata(body["metadata"]); msg != "" {
			novaError(w, http.StatusBadRequest, msg)
			return
		}
	default:
		novaError(w, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
		return
	}
	s.mu.Lock()
	vol, ok := s.cinder.volumes[id]
	var out map[string]string
	if ok {
		switch r.Method {
		case http.MethodPost:
			next := maps.Clone(vol.metadata)
			maps.Copy(next, md)
			vol.metadata, vol.updated = next, time.Now().UTC()
		case http.MethodPut:
			vol.metadata, vol.updated = md, time.Now().UTC()
		}
		out = vol.metadata
	}
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, volumeNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"metadata": out})
}

func (s *Sim) createVolumeSnapshot(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Snapshot *struct {
			VolumeID    string          `json:"volume_id"`
			Force       any             `json:"force"`
			Name        *string         `json:"name"`
			Description *string         `json:"description"`
			Metadata    json.RawMessage `json:"metadata"`
		} `json:"snapshot"`
	}
	if err := decodeJSON(r, &body); err != nil || body.Snapshot == nil || body.Snapshot.VolumeID == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute snapshot. 'volume_id' is a required property")
		return
	}
	req := body.Snapshot
	force := false
	switch f := req.Force.(type) {
	case bool:
		force = f
	case string:
		force = strings.EqualFold(f, "true") || f == "1" || strings.EqualFold(f, "yes")
	}
	md, msg := parseCinderMetadata(req.Metadata)
	if msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	vol, ok := s.cinder.volumes[req.VolumeID]
	var out map[string]any
	if ok {
		switch {
		case vol.status == "available", vol.status == "in-use" && force:
		default:
			msg = invalidVolume(fmt.Sprintf("Volume %s status must be available, but current status is: %s.", vol.id, vol.status))
		}
	}
	if ok && msg == "" {
		now := time.Now().UTC()
		snap := &volSnapshot{id: uuid.NewString(), volumeID: vol.id, status: "creating", size: vol.size,
			metadata: md, created: now, updated: now, description: req.Description}
		if req.Name != nil {
			snap.name = *req.Name
		}
		fail := s.cinder.failSnaps > 0
		if fail {
			s.cinder.failSnaps--
		}
		s.cinder.snapshots[snap.id] = snap
		s.cinder.snapOrder = append(s.cinder.snapOrder, snap)
		s.after(s.draw(s.opts.VolumeSnapshotTime), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cinder.snapshots[snap.id] == snap && snap.status == "creating" {
				snap.status, snap.updated = "available", time.Now().UTC()
				if fail {
					snap.status = "error"
				}
			}
		})
		out = s.snapshotJSON(snap)
	}
	s.mu.Unlock()
	switch {
	case !ok:
		novaError(w, http.StatusNotFound, volumeNotFound(req.VolumeID))
	case msg != "":
		novaError(w, http.StatusBadRequest, msg)
	default:
		writeJSON(w, http.StatusAccepted, map[string]any{"snapshot": out})
	}
}

func (s *Sim) listVolumeSnapshots(w http.ResponseWriter, r *http.Request, v microversion, detail bool) {
	q := r.URL.Query()
	// Cinder filters snapshots by metadata from 3.22 on and drops the
	// filter below.
	f, msg := parseCinderFilter(q, v.atLeast3(22))
	limit, marker, msg2 := cinderPage(q)
	if msg == "" {
		msg = msg2
	}
	if msg != "" {
		novaError(w, http.StatusBadRequest, msg)
		return
	}
	s.mu.Lock()
	start := len(s.cinder.snapOrder) - 1
	if marker != "" {
		i := slices.IndexFunc(s.cinder.snapOrder, func(sn *volSnapshot) bool { return sn.id == marker })
		if i < 0 {
			s.mu.Unlock()
			novaError(w, http.StatusNotFound, fmt.Sprintf("Marker snapshot %s could not be found.", marker))
			return
		}
		start = i - 1
	}
	page := []any{}
	last := ""
	for i := start; i >= 0 && len(page) < limit; i-- {
		sn := s.cinder.snapOrder[i]
		if !f.match(sn.name, sn.status, sn.volumeID, sn.metadata) {
			continue
		}
		out := s.snapshotJSON(sn)
		if !detail {
			delete(out, "os-extended-snapshot-attributes:progress")
			delete(out, "os-extended-snapshot-attributes:project_id")
		}
		page = append(page, out)
		last = sn.id
	}
	s.mu.Unlock()
	body := map[string]any{"snapshots": page}
	if limit > 0 && len(page) == limit {
		kind := "snapshots"
		if detail {
			kind = "snapshots/detail"
		}
		body["snapshots_links"] = s.nextLink(kind, q, last)
	}
	writeJSON(w, http.StatusOK, body)
}

func snapshotNotFound(id string) string { return fmt.Sprintf("Snapshot %s could not be found.", id) }

func (s *Sim) showVolumeSnapshot(w http.ResponseWriter, id string) {
	s.mu.Lock()
	sn, ok := s.cinder.snapshots[id]
	var out map[string]any
	if ok {
		out = s.snapshotJSON(sn)
	}
	s.mu.Unlock()
	if !ok {
		novaError(w, http.StatusNotFound, snapshotNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshot": out})
}

func (s *Sim) deleteVolumeSnapshot(w http.ResponseWriter, id string) {
	s.mu.Lock()
	sn, ok := s.cinder.snapshots[id]
	msg := ""
	if ok {
		switch sn.status {
		case "deleting":
		case "available", "error":
			sn.status, sn.updated = "deleting", time.Now().UTC()
			s.after(s.draw(s.opts.VolumeSnapshotTime), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.cinder.snapshots[sn.id] == sn {
					delete(s.cinder.snapshots, sn.id)
					s.cinder.snapOrder = slices.DeleteFunc(s.cinder.snapOrder, func(x *volSnapshot) bool { return x == sn })
				}
			})
		default:
			msg = fmt.Sprintf("Invalid snapshot: Snapshot status must be available or error and must not be part of a group, but current status is %s.", sn.status)
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		novaError(w, http.StatusNotFound, snapshotNotFound(id))
	case msg != "":
		novaError(w, http.StatusBadRequest, msg)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// view is the volume as tests see it. Call with s.mu held.
func (vol *volume) view() Volume {
	return Volume{ID: vol.id, Name: vol.name, Status: vol.status, Size: vol.size, Bootable: vol.bootable,
		Metadata: maps.Clone(vol.metadata), ServerID: vol.serverID, Device: vol.device, Created: vol.created}
}

// AddVolume creates a volume at once (available unless spec.Status says
// otherwise), as if an operator had made it before the test.
func (s *Sim) AddVolume(spec VolumeSpec) Volume {
	if spec.Status == "" {
		spec.Status = "available"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storeVolume(spec).view()
}

// Volumes returns every volume, those being deleted included, in creation
// order. The result is a copy.
func (s *Sim) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Volume, len(s.cinder.volOrder))
	for i, vol := range s.cinder.volOrder {
		out[i] = vol.view()
	}
	return out
}

// VolumeByID returns one volume, false when it does not exist.
func (s *Sim) VolumeByID(id string) (Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vol, ok := s.cinder.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return vol.view(), true
}

// VolumeSnapshots returns every volume snapshot, in creation order.
func (s *Sim) VolumeSnapshots() []VolumeSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VolumeSnapshot, len(s.cinder.snapOrder))
	for i, sn := range s.cinder.snapOrder {
		out[i] = VolumeSnapshot{ID: sn.id, Name: sn.name, VolumeID: sn.volumeID, Status: sn.status,
			Size: sn.size, Metadata: maps.Clone(sn.metadata), Created: sn.created}
	}
	return out
}

// FailNextVolumeSnapshots makes the next n volume snapshots end in status
// error instead of available.
func (s *Sim) FailNextVolumeSnapshots(n int) {
	s.mu.Lock()
	s.cinder.failSnaps += n
	s.mu.Unlock()
}
