package sim

import (
	"cmp"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Image is a Glance image.
type Image struct {
	ID, Name, Status string
	Created          time.Time
	// Properties are custom image properties (os_distro, ...), shown as
	// top-level keys of the image, as Glance does.
	Properties map[string]string
	Tags       []string
	Visibility string
	// BootFails makes every server booted from this image go to ERROR.
	BootFails bool
	// FailsAfter, when above zero, makes every server booted from this
	// image pass its health check for this long after its application
	// starts, and then fail it (503) for good: an image that passes its
	// gate and fails later (a leak, a cron job, a certificate). The
	// failure is the image's, apart from SetHealth: a rebuild with
	// another image (or a restart) starts the application afresh.
	FailsAfter time.Duration
}

// image is the simulator's record of an image. Properties and Tags are
// never changed in place, only replaced.
type image struct {
	Image
	updated         time.Time
	seq             int
	size            int64 // 0: no data uploaded yet
	checksum, hash  string
	containerFormat string
	diskFormat      string
	minDisk, minRAM int
	protected       bool
	hidden          bool
}

// AddImage publishes an image and returns what was stored: an empty ID
// gets a new UUID, an empty Status is "active", a zero Created is now and
// an empty Visibility "public".
func (s *Sim) AddImage(img Image) Image {
	if img.Status == "" {
		img.Status = "active"
	}
	if img.Visibility == "" {
		img.Visibility = "public"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := s.storeImage(img)
	if stored.Status == "active" {
		stored.setData([]byte("simulated image " + stored.ID))
	}
	return stored.export()
}

// storeImage records an image, filling in its ID, creation time and
// formats. Call with s.mu held.
func (s *Sim) storeImage(img Image) *image {
	if img.ID == "" {
		img.ID = uuid.NewString()
	}
	if img.Created.IsZero() {
		img.Created = time.Now()
	}
	img.Created = img.Created.UTC()
	img.Properties = maps.Clone(img.Properties)
	if img.Properties == nil {
		img.Properties = map[string]string{}
	}
	img.Tags = slices.Clone(img.Tags)
	s.imageSeq++
	rec := &image{Image: img, updated: img.Created, seq: s.imageSeq, containerFormat: "bare", diskFormat: "qcow2"}
	s.images[img.ID] = rec
	return rec
}

func (img *image) setData(data []byte) {
	sum := md5.Sum(data)
	h := sha512.Sum512(data)
	img.size, img.checksum, img.hash = int64(len(data)), hex.EncodeToString(sum[:]), hex.EncodeToString(h[:])
}

func (img *image) export() Image {
	out := img.Image
	out.Properties = maps.Clone(img.Properties)
	out.Tags = slices.Clone(img.Tags)
	return out
}

// SetImageStatus changes an image's status, e.g. to "deactivated": Nova
// refuses to boot from an image that is not active.
func (s *Sim) SetImageStatus(id, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[id]
	if !ok {
		return fmt.Errorf("sim: no image %s", id)
	}
	img.Status, img.updated = status, time.Now().UTC()
	return nil
}

var (
	reImage       = regexp.MustCompile(`^/v2/images/([^/]+)$`)
	reImageFile   = regexp.MustCompile(`^/v2/images/([^/]+)/file$`)
	reImageTag    = regexp.MustCompile(`^/v2/images/([^/]+)/tags/([^/]+)$`)
	reImageAction = regexp.MustCompile(`^/v2/images/([^/]+)/actions/(deactivate|reactivate)$`)
)

// serveImageVersions answers the Glance root: the versions clients
// discover v2 from.
func (s *Sim) serveImageVersions(w http.ResponseWriter, r *http.Request) {
	var versions []any
	for _, v := range []struct{ id, status string }{{"v2.16", "CURRENT"}, {"v2.15", "SUPPORTED"}, {"v2.9", "SUPPORTED"}, {"v2.0", "SUPPORTED"}} {
		versions = append(versions, map[string]any{"id": v.id, "status": v.status,
			"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/image/v2/"}}})
	}
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": versions})
}

func (s *Sim) serveImage(w http.ResponseWriter, r *http.Request, sub string) {
	m := r.Method
	var p []string
	match := func(re *regexp.Regexp) bool {
		p = re.FindStringSubmatch(sub)
		return p != nil
	}
	notAllowed := func() {
		glanceError(w, r, http.StatusMethodNotAllowed, "The method specified is not allowed for this resource.")
	}
	switch {
	case sub == "/v2/images":
		switch m {
		case http.MethodGet, http.MethodHead:
			s.listImages(w, r)
		case http.MethodPost:
			s.createImage(w, r)
		default:
			notAllowed()
		}
	case match(reImage):
		switch m {
		case http.MethodGet, http.MethodHead:
			s.withImage(w, r, p[1], func(img *image) (int, string) { return http.StatusOK, "" })
		case http.MethodPatch:
			s.patchImage(w, r, p[1])
		case http.MethodDelete:
			s.mu.Lock()
			img, ok := s.images[p[1]]
			protected := ok && img.protected
			if ok && !protected {
				delete(s.images, p[1])
			}
			s.mu.Unlock()
			switch {
			case !ok:
				glanceError(w, r, http.StatusNotFound, "No image found with ID "+p[1])
			case protected:
				glanceError(w, r, http.StatusForbidden, "Image "+p[1]+" is protected and cannot be deleted.")
			default:
				w.WriteHeader(http.StatusNoContent)
			}
		default:
			notAllowed()
		}
	case match(reImageFile):
		if m != http.MethodPut {
			notAllowed()
			return
		}
		s.uploadImage(w, r, p[1])
	case match(reImageTag):
		if m != http.MethodPut && m != http.MethodDelete {
			notAllowed()
			return
		}
		s.imageTag(w, r, p[1], unescape(p[2]))
	case match(reImageAction):
		if m != http.MethodPost {
			notAllowed()
			return
		}
		s.imageAction(w, r, p[1], p[2])
	default:
		glanceError(w, r, http.StatusNotFound, "The resource could not be found.")
	}
}

// glanceError answers as Glance (webob) does: JSON for a client that
// accepts it, plain text otherwise.
func glanceError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	code := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if r == nil || strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, status, map[string]any{"code": code, "title": http.StatusText(status), "message": msg})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s\n\n%s\n\n   ", code, msg)
}

// withImage answers an image's JSON after f's change, or f's error, or 404.
func (s *Sim) withImage(w http.ResponseWriter, r *http.Request, id string, f func(*image) (int, string)) {
	s.mu.Lock()
	img, ok := s.images[id]
	var status int
	var msg string
	var body map[string]any
	if ok {
		if status, msg = f(img); msg == "" {
			body = s.imageJSON(img)
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		glanceError(w, r, http.StatusNotFound, "No image found with ID "+id)
	case msg != "":
		glanceError(w, r, status, msg)
	default:
		writeJSON(w, status, body)
	}
}

// imageJSON renders an image as Glance does. Call with s.mu held.
func (s *Sim) imageJSON(img *image) map[string]any {
	out := make(map[string]any, len(img.Properties)+24)
	for k, v := range img.Properties {
		out[k] = v
	}
	nullable := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	tags := img.Tags
	if tags == nil {
		tags = []string{}
	}
	out["id"], out["name"], out["status"], out["visibility"] = img.ID, nullable(img.Name), img.Status, img.Visibility
	out["protected"], out["os_hidden"], out["tags"] = img.protected, img.hidden, tags
	out["container_format"], out["disk_format"] = nullable(img.containerFormat), nullable(img.diskFormat)
	out["min_disk"], out["min_ram"] = img.minDisk, img.minRAM
	out["created_at"], out["updated_at"] = img.Created.Format(novaTime), img.updated.UTC().Format(novaTime)
	out["self"], out["file"], out["schema"] = "/v2/images/"+img.ID, "/v2/images/"+img.ID+"/file", "/v2/schemas/image"
	out["owner"] = s.projectID
	if img.size > 0 {
		out["size"], out["virtual_size"] = img.size, img.size*4
		out["checksum"], out["os_hash_algo"], out["os_hash_value"] = img.checksum, "sha512", img.hash
	} else {
		out["size"], out["virtual_size"], out["checksum"], out["os_hash_algo"], out["os_hash_value"] = nil, nil, nil, nil, nil
	}
	return out
}

// glanceKeys are the query keys with a meaning of their own; any other key
// filters on a custom property.
var glanceKeys = map[string]bool{
	"limit": true, "marker": true, "sort": true, "sort_key": true, "sort_dir": true, "name": true,
	"status": true, "visibility": true, "tag": true, "owner": true, "member_status": true, "os_hidden": true,
	"id": true, "size_min": true, "size_max": true, "created_at": true, "updated_at": true,
	"container_format": true, "disk_format": true, "protected": true, "checksum": true,
}

var glanceSortKeys = []string{"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at"}

// inValues reads a Glance filter value, with its "in:a,b" form.
func inValues(v string) []string {
	rest, ok := strings.CutPrefix(v, "in:")
	if !ok {
		return []string{v}
	}
	var out []string
	for part := range strings.SplitSeq(rest, ",") {
		out = append(out, strings.Trim(part, `"`))
	}
	return out
}

// timeFilter reads Glance's "op:time" filter on created_at/updated_at.
func timeFilter(v string) (func(time.Time) bool, error) {
	op, ts, ok := strings.Cut(v, ":")
	if !ok || !slices.Contains([]string{"gt", "gte", "lt", "lte", "eq", "neq"}, op) {
		op, ts = "eq", v
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil {
		return nil, err
	}
	return func(x time.Time) bool {
		x = x.Truncate(time.Second)
		switch op {
		case "gt":
			return x.After(t)
		case "gte":
			return !x.Before(t)
		case "lt":
			return x.Before(t)
		case "lte":
			return !x.After(t)
		case "neq":
			return !x.Equal(t)
		}
		return x.Equal(t)
	}, nil
}

type imageSort struct {
	keys []string
	desc []bool
}

// parseImageSort reads sort=key:dir,... or sort_key/sort_dir (repeatable;
// one dir applies to every key). Glance breaks ties by created_at and id.
func parseImageSort(q url.Values) (imageSort, string) {
	var srt imageSort
	if sp := q.Get("sort"); sp != "" {
		if q.Has("sort_key") || q.Has("sort_dir") {
			return srt, "Old and new sorting syntax cannot be combined"
		}
		for part := range strings.SplitSeq(sp, ",") {
			key, dir, _ := strings.Cut(strings.TrimSpace(part), ":")
			srt.keys = append(srt.keys, strings.TrimSpace(key))
			srt.desc = append(srt.desc, strings.TrimSpace(dir) != "asc")
			if d := strings.TrimSpace(dir); d != "" && d != "asc" && d != "desc" {
				return srt, "Invalid sort direction: " + d
			}
		}
	} else {
		srt.keys = q["sort_key"]
		dirs := q["sort_dir"]
		if len(dirs) > 1 && len(dirs) != len(srt.keys) {
			return srt, "Number of sort dirs does not match the number of sort keys"
		}
		for i := range srt.keys {
			d := "desc"
			switch {
			case len(dirs) == 1:
				d = dirs[0]
			case len(dirs) > 1:
				d = dirs[i]
			}
			if d != "asc" && d != "desc" {
				return srt, "Invalid sort direction: " + d
			}
			srt.desc = append(srt.desc, d == "desc")
		}
	}
	if len(srt.keys) == 0 {
		srt.keys, srt.desc = []string{"created_at"}, []bool{true}
	}
	for _, k := range srt.keys {
		if !slices.Contains(glanceSortKeys, k) {
			return srt, "Invalid sort key: " + k + ". It should be one of the following: " + strings.Join(glanceSortKeys, ", ") + "."
		}
	}
	last := srt.desc[len(srt.desc)-1]
	for _, k := range []string{"created_at", "id"} {
		if !slices.Contains(srt.keys, k) {
			srt.keys, srt.desc = append(srt.keys, k), append(srt.desc, last)
		}
	}
	return srt, ""
}

func (srt imageSort) compare(a, b *image) int {
	for i, k := range srt.keys {
		var c int
		switch k {
		case "name":
			c = cmp.Compare(a.Name, b.Name)
		case "status":
			c = cmp.Compare(a.Status, b.Status)
		case "container_format":
			c = cmp.Compare(a.containerFormat, b.containerFormat)
		case "disk_format":
			c = cmp.Compare(a.diskFormat, b.diskFormat)
		case "size":
			c = cmp.Compare(a.size, b.size)
		case "id":
			// Equal IDs only for the same image; creation order breaks ties
			// of everything else the same way every time.
			c = cmp.Compare(a.seq, b.seq)
		case "created_at":
			c = a.Created.Compare(b.Created)
		case "updated_at":
			c = a.updated.Compare(b.updated)
		}
		if srt.desc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// listImages answers GET /v2/images: filtered, sorted (newest first by
// default), a page at a time, with a relative next link whenever the page
// is full.
func (s *Sim) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 25
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		switch {
		case err != nil:
			glanceError(w, r, http.StatusBadRequest, "limit param must be an integer")
			return
		case n < 0:
			glanceError(w, r, http.StatusBadRequest, "limit param must be positive")
			return
		}
		limit = min(n, 1000)
	}
	srt, msg := parseImageSort(q)
	if msg != "" {
		glanceError(w, r, http.StatusBadRequest, msg)
		return
	}
	if v := q.Get("visibility"); v != "" && !slices.Contains([]string{"public", "private", "shared", "community", "all"}, v) {
		glanceError(w, r, http.StatusBadRequest, "Invalid visibility value: "+v)
		return
	}
	hidden := false
	if v := q.Get("os_hidden"); v != "" {
		if v != "true" && v != "false" {
			glanceError(w, r, http.StatusBadRequest, fmt.Sprintf("Invalid value '%s' for 'os_hidden' filter. Valid values are 'true' or 'false'.", v))
			return
		}
		hidden = v == "true"
	}
	var checks []func(*image) bool
	for _, k := range []string{"created_at", "updated_at"} {
		if v := q.Get(k); v != "" {
			f, err := timeFilter(v)
			if err != nil {
				glanceError(w, r, http.StatusBadRequest, "Unable to filter on a invalid date: "+v)
				return
			}
			if k == "created_at" {
				checks = append(checks, func(img *image) bool { return f(img.Created) })
			} else {
				checks = append(checks, func(img *image) bool { return f(img.updated) })
			}
		}
	}
	for _, k := range []string{"size_min", "size_max"} {
		if v := q.Get(k); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				glanceError(w, r, http.StatusBadRequest, "Invalid "+k+" value: "+v)
				return
			}
			if k == "size_min" {
				checks = append(checks, func(img *image) bool { return img.size >= n })
			} else {
				checks = append(checks, func(img *image) bool { return img.size <= n })
			}
		}
	}
	field := func(key string, get func(*image) string) {
		if v := q.Get(key); v != "" {
			vals := inValues(v)
			checks = append(checks, func(img *image) bool { return slices.Contains(vals, get(img)) })
		}
	}
	field("name", func(i *image) string { return i.Name })
	field("status", func(i *image) string { return i.Status })
	field("id", func(i *image) string { return i.ID })
	field("container_format", func(i *image) string { return i.containerFormat })
	field("disk_format", func(i *image) string { return i.diskFormat })
	field("checksum", func(i *image) string { return i.checksum })
	field("owner", func(*image) string { return s.projectID })
	field("protected", func(i *image) string { return strconv.FormatBool(i.protected) })
	if v := q.Get("visibility"); v != "" && v != "all" {
		checks = append(checks, func(img *image) bool { return img.Visibility == v })
	}
	tags := q["tag"]
	props := map[string]string{}
	for k, vals := range q {
		if !glanceKeys[k] {
			props[k] = vals[0]
		}
	}
	match := func(img *image) bool {
		if img.hidden != hidden {
			return false
		}
		for _, c := range checks {
			if !c(img) {
				return false
			}
		}
		for _, t := range tags {
			if !slices.Contains(img.Tags, t) {
				return false
			}
		}
		for k, v := range props {
			if got, ok := img.Properties[k]; !ok || got != v {
				return false
			}
		}
		return true
	}

	s.mu.Lock()
	var marker *image
	if id := q.Get("marker"); id != "" {
		var ok bool
		if marker, ok = s.images[id]; !ok {
			s.mu.Unlock()
			glanceError(w, r, http.StatusBadRequest, "No image found with ID "+id)
			return
		}
	}
	var all []*image
	for _, img := range s.images {
		if match(img) && (marker == nil || srt.compare(marker, img) < 0) {
			all = append(all, img)
		}
	}
	slices.SortFunc(all, srt.compare)
	page := all[:min(limit, len(all))]
	list := make([]any, len(page))
	for i, img := range page {
		list[i] = s.imageJSON(img)
	}
	s.mu.Unlock()

	params := url.Values{}
	maps.Copy(params, q)
	params.Del("marker")
	body := map[string]any{"images": list, "first": "/v2/images", "schema": "/v2/schemas/images"}
	if len(params) > 0 {
		body["first"] = "/v2/images?" + params.Encode()
	}
	if len(page) > 0 && len(page) == limit {
		params.Set("marker", page[len(page)-1].ID)
		body["next"] = "/v2/images?" + params.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// imageReadOnly are the attributes a client may not set.
var imageReadOnly = []string{"created_at", "updated_at", "status", "checksum", "size", "virtual_size",
	"direct_url", "self", "file", "schema", "os_hash_algo", "os_hash_value", "stores", "owner", "locations"}

// setImageAttr sets one attribute from a create body or a patch, or says
// why it cannot. Call with s.mu held if img is stored.
func setImageAttr(img *image, key string, raw json.RawMessage) (int, string) {
	if slices.Contains(imageReadOnly, key) {
		return http.StatusForbidden, fmt.Sprintf("Attribute '%s' is read-only.", key)
	}
	str := func() (string, bool) {
		var v *string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", false
		}
		if v == nil {
			return "", true
		}
		return *v, true
	}
	bad := func() (int, string) {
		return http.StatusBadRequest, fmt.Sprintf("Invalid value for %s: %s", key, raw)
	}
	switch key {
	case "id":
		return http.StatusForbidden, "Attribute 'id' is read-only."
	case "name", "container_format", "disk_format", "visibility":
		v, ok := str()
		if !ok {
			return bad()
		}
		switch key {
		case "name":
			img.Name = v
		case "container_format":
			img.containerFormat = v
		case "disk_format":
			img.diskFormat = v
		case "visibility":
			if !slices.Contains([]string{"public", "private", "shared", "community"}, v) {
				return bad()
			}
			img.Visibility = v
		}
	case "tags":
		var tags []string
		if err := json.Unmarshal(raw, &tags); err != nil {
			return bad()
		}
		img.Tags = slices.Compact(slices.Clone(tags))
	case "min_disk", "min_ram":
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
			return bad()
		}
		if key == "min_disk" {
			img.minDisk = n
		} else {
			img.minRAM = n
		}
	case "protected", "os_hidden":
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return bad()
		}
		if key == "protected" {
			img.protected = b
		} else {
			img.hidden = b
		}
	default:
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad()
		}
		props := maps.Clone(img.Properties)
		props[key] = v
		img.Properties = props
	}
	return 0, ""
}

// createImage answers POST /v2/images: a queued image record, data to
// come with PUT /file. Keys Glance does not know become properties.
func (s *Sim) createImage(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := decodeJSON(r, &body); err != nil || body == nil {
		glanceError(w, r, http.StatusBadRequest, "Body expected in request.")
		return
	}
	img := &image{Image: Image{Status: "queued", Visibility: "shared", Properties: map[string]string{}}}
	for _, k := range slices.Sorted(maps.Keys(body)) {
		raw := body[k]
		if k == "id" {
			if json.Unmarshal(raw, &img.ID) != nil || !isUUID(img.ID) {
				glanceError(w, r, http.StatusBadRequest, fmt.Sprintf("Invalid value for id: %s", raw))
				return
			}
			continue
		}
		if status, msg := setImageAttr(img, k, raw); msg != "" {
			glanceError(w, r, status, msg)
			return
		}
	}
	s.mu.Lock()
	if _, dup := s.images[img.ID]; dup && img.ID != "" {
		s.mu.Unlock()
		glanceError(w, r, http.StatusConflict, "Image with identifier "+img.ID+" already exists!")
		return
	}
	stored := s.storeImage(img.Image)
	stored.containerFormat, stored.diskFormat = img.containerFormat, img.diskFormat
	stored.minDisk, stored.minRAM, stored.protected, stored.hidden = img.minDisk, img.minRAM, img.protected, img.hidden
	out := s.imageJSON(stored)
	s.mu.Unlock()
	w.Header().Set("Location", s.endpoint+"/image/v2/images/"+stored.ID)
	writeJSON(w, http.StatusCreated, out)
}

// patchImage answers PATCH /v2/images/{id} with a JSON patch (add,
// replace, remove) of its attributes and properties.
func (s *Sim) patchImage(w http.ResponseWriter, r *http.Request, id string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openstack-images-v2.1-json-patch") &&
		!strings.HasPrefix(ct, "application/openstack-images-v2.0-json-patch") {
		glanceError(w, r, http.StatusUnsupportedMediaType, "Unsupported Content-Type")
		return
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := decodeJSON(r, &ops); err != nil {
		glanceError(w, r, http.StatusBadRequest, "Malformed JSON patch: "+err.Error())
		return
	}
	s.withImage(w, r, id, func(img *image) (int, string) {
		work := *img
		for _, op := range ops {
			key := strings.TrimPrefix(op.Path, "/")
			if key == "" || strings.Contains(key, "/") {
				return http.StatusBadRequest, "Invalid JSON pointer for this resource: '" + op.Path + "'"
			}
			switch op.Op {
			case "add", "replace":
				_, isProp := work.Properties[key]
				if op.Op == "replace" && !isProp && !glanceKeys[key] && !slices.Contains([]string{"tags", "min_disk", "min_ram"}, key) {
					return http.StatusConflict, "Property " + key + " does not exist."
				}
				if status, msg := setImageAttr(&work, key, op.Value); msg != "" {
					return status, msg
				}
			case "remove":
				if _, ok := work.Properties[key]; !ok {
					return http.StatusConflict, "Property " + key + " does not exist."
				}
				props := maps.Clone(work.Properties)
				delete(props, key)
				work.Properties = props
			default:
				return http.StatusBadRequest, "Invalid operation: " + op.Op
			}
		}
		work.updated = time.Now().UTC()
		*img = work
		return http.StatusOK, ""
	})
}

// uploadImage answers PUT /v2/images/{id}/file: a queued image takes the
// data and becomes active.
func (s *Sim) uploadImage(w http.ResponseWriter, r *http.Request, id string) {
	md := md5.New()
	sh := sha512.New()
	n, err := io.Copy(io.MultiWriter(md, sh), r.Body)
	if err != nil {
		glanceError(w, r, http.StatusBadRequest, "Error reading image data: "+err.Error())
		return
	}
	s.mu.Lock()
	img, ok := s.images[id]
	status := ""
	if ok {
		status = img.Status
		if status == "queued" {
			img.Status, img.updated = "active", time.Now().UTC()
			img.size, img.checksum, img.hash = n, hex.EncodeToString(md.Sum(nil)), hex.EncodeToString(sh.Sum(nil))
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		glanceError(w, r, http.StatusNotFound, "No image found with ID "+id)
	case status != "queued":
		glanceError(w, r, http.StatusConflict, "Image status transition from "+status+" to saving is not allowed")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Sim) imageTag(w http.ResponseWriter, r *http.Request, id, tag string) {
	s.mu.Lock()
	img, ok := s.images[id]
	missing := false
	if ok {
		has := slices.Contains(img.Tags, tag)
		switch {
		case r.Method == http.MethodPut && !has:
			img.Tags = append(slices.Clone(img.Tags), tag)
			img.updated = time.Now().UTC()
		case r.Method == http.MethodDelete && has:
			img.Tags = slices.DeleteFunc(slices.Clone(img.Tags), func(t string) bool { return t == tag })
			img.updated = time.Now().UTC()
		case r.Method == http.MethodDelete:
			missing = true
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		glanceError(w, r, http.StatusNotFound, "No image found with ID "+id)
	case missing:
		glanceError(w, r, http.StatusNotFound, "Tag "+tag+" not found")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Sim) imageAction(w http.ResponseWriter, r *http.Request, id, action string) {
	s.mu.Lock()
	img, ok := s.images[id]
	msg := ""
	if ok {
		switch {
		case action == "deactivate" && (img.Status == "active" || img.Status == "deactivated"):
			img.Status = "deactivated"
		case action == "reactivate" && (img.Status == "active" || img.Status == "deactivated"):
			img.Status = "active"
		default:
			msg = fmt.Sprintf("Not allowed to %s image in status '%s'", action, img.Status)
		}
		img.updated = time.Now().UTC()
	}
	s.mu.Unlock()
	switch {
	case !ok:
		glanceError(w, r, http.StatusNotFound, "No image found with ID "+id)
	case msg != "":
		glanceError(w, r, http.StatusBadRequest, msg)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// Images returns every image, by creation time, as tests see them.
func (s *Sim) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, img := range s.images {
		v := img.Image
		v.Properties = maps.Clone(img.Properties)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}
