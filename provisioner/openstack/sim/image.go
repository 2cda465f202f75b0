package sim

import (
	"encoding/json"
	"fmt"
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
	// Properties are custom image properties (os_distro, ...).
	Properties map[string]string
	Tags       []string
	Visibility string
	// BootFails makes every server booted from this image go to ERROR.
	BootFails bool
}

type image struct {
	Image
	updated time.Time
	seq     int
}

// AddImage publishes an image: an empty ID gets a new UUID, an empty
// status is "active", a zero Created is now, an empty visibility "public".
func (s *Sim) AddImage(img Image) Image {
	if img.ID == "" {
		img.ID = uuid.NewString()
	}
	if img.Status == "" {
		img.Status = "active"
	}
	if img.Created.IsZero() {
		img.Created = time.Now().UTC()
	}
	if img.Visibility == "" {
		img.Visibility = "public"
	}
	img.Properties = maps.Clone(img.Properties)
	img.Tags = slices.Clone(img.Tags)
	s.mu.Lock()
	s.images[img.ID] = &image{Image: img, updated: img.Created, seq: len(s.images)}
	s.mu.Unlock()
	return img
}

// SetImageStatus changes an image's status, e.g. to "deactivated".
func (s *Sim) SetImageStatus(id, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[id]
	if !ok {
		return fmt.Errorf("no image %s", id)
	}
	img.Status = status
	img.updated = time.Now().UTC()
	return nil
}

var (
	reImage     = regexp.MustCompile(`^/v2/images/([^/]+)$`)
	reImageFile = regexp.MustCompile(`^/v2/images/([^/]+)/file$`)
)

func (s *Sim) serveImage(w http.ResponseWriter, r *http.Request, sub string) {
	switch {
	case (sub == "" || sub == "/") && r.Method == http.MethodGet:
		// Glance's version document: clients discover v2 here.
		var versions []any
		for _, v := range []struct{ id, status string }{{"v2.16", "CURRENT"}, {"v2.15", "SUPPORTED"}, {"v2.0", "SUPPORTED"}} {
			versions = append(versions, map[string]any{"id": v.id, "status": v.status,
				"links": []any{map[string]any{"rel": "self", "href": s.endpoint + "/image/v2/"}}})
		}
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": versions})
	case sub == "/v2/images" && r.Method == http.MethodGet:
		s.listImages(w, r)
	case sub == "/v2/images" && r.Method == http.MethodPost:
		s.createImage(w, r)
	case reImage.MatchString(sub):
		id := reImage.FindStringSubmatch(sub)[1]
		s.mu.Lock()
		img, ok := s.images[id]
		var body map[string]any
		if ok {
			body = imageJSON(img)
			if r.Method == http.MethodDelete {
				delete(s.images, id)
			}
		}
		s.mu.Unlock()
		switch {
		case !ok:
			glanceError(w, http.StatusNotFound, "No image found with ID "+id)
		case r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, body)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			glanceError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	case reImageFile.MatchString(sub) && r.Method == http.MethodPut:
		id := reImageFile.FindStringSubmatch(sub)[1]
		s.mu.Lock()
		img, ok := s.images[id]
		if ok {
			img.Status = "active"
			img.updated = time.Now().UTC()
		}
		s.mu.Unlock()
		if !ok {
			glanceError(w, http.StatusNotFound, "No image found with ID "+id)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		glanceError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

// Glance answers errors as plain text.
func glanceError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s\n\n%s\n", status, http.StatusText(status), msg)
}

func imageJSON(img *image) map[string]any {
	out := map[string]any{}
	for k, v := range img.Properties {
		out[k] = v
	}
	tags := img.Tags
	if tags == nil {
		tags = []string{}
	}
	for k, v := range map[string]any{
		"id": img.ID, "name": img.Name, "status": img.Status, "visibility": img.Visibility,
		"protected": false, "tags": tags, "container_format": "bare", "disk_format": "qcow2",
		"min_disk": 0, "min_ram": 0, "size": 21430272, "virtual_size": 117440512,
		"checksum": "1d3062cd89af34e419f7100277f38b2b", "os_hash_algo": "sha512",
		"os_hash_value": "553d220ed58cfee7dafe003c446a9f197ab5edf8ffc09396c74187cf83873c877e7ae041cb80f3b91489acf687183adcd689b53b38e3ddd22e627e7f98a09c46",
		"created_at":    img.Created.UTC().Format(novaTime), "updated_at": img.updated.UTC().Format(novaTime),
		"self": "/v2/images/" + img.ID, "file": "/v2/images/" + img.ID + "/file", "schema": "/v2/schemas/image",
		"owner": "simulated", "os_hidden": false,
	} {
		out[k] = v
	}
	if img.Status == "queued" {
		out["size"], out["virtual_size"], out["checksum"] = nil, nil, nil
	}
	return out
}

// Query keys Glance gives a meaning of their own; any other key filters
// on a custom property.
var glanceReserved = map[string]bool{
	"limit": true, "marker": true, "sort": true, "sort_key": true, "sort_dir": true, "name": true,
	"status": true, "visibility": true, "tag": true, "owner": true, "member_status": true, "os_hidden": true,
	"id": true, "size_min": true, "size_max": true, "created_at": true, "updated_at": true,
	"container_format": true, "disk_format": true, "protected": true,
}

func (s *Sim) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 25
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			glanceError(w, http.StatusBadRequest, "limit param must be an integer")
			return
		}
		limit = min(n, 1000)
	}
	sortKey, desc := "created_at", true
	if sortParam := q.Get("sort"); sortParam != "" {
		first, _, _ := strings.Cut(sortParam, ",")
		key, dir, _ := strings.Cut(first, ":")
		sortKey, desc = key, dir != "asc"
	} else if k := q.Get("sort_key"); k != "" {
		sortKey, desc = k, q.Get("sort_dir") != "asc"
	}
	if sortKey != "created_at" && sortKey != "name" && sortKey != "updated_at" && sortKey != "id" {
		glanceError(w, http.StatusBadRequest, "Unsupported sort_key "+sortKey)
		return
	}

	match := func(img *image) bool {
		if v := q.Get("name"); v != "" && img.Name != v {
			return false
		}
		if v := q.Get("status"); v != "" && img.Status != v {
			return false
		}
		if v := q.Get("visibility"); v != "" && v != "all" && img.Visibility != v {
			return false
		}
		if v := q.Get("id"); v != "" && img.ID != v {
			return false
		}
		for _, t := range q["tag"] {
			if !slices.Contains(img.Tags, t) {
				return false
			}
		}
		for k, vals := range q {
			if glanceReserved[k] {
				continue
			}
			if got, ok := img.Properties[k]; !ok || got != vals[0] {
				return false
			}
		}
		return true
	}

	s.mu.Lock()
	var all []*image
	for _, img := range s.images {
		if match(img) {
			all = append(all, img)
		}
	}
	less := func(a, b *image) bool {
		switch sortKey {
		case "name":
			if a.Name != b.Name {
				return a.Name < b.Name
			}
		case "updated_at":
			if !a.updated.Equal(b.updated) {
				return a.updated.Before(b.updated)
			}
		case "id":
			return a.ID < b.ID
		default:
			if !a.Created.Equal(b.Created) {
				return a.Created.Before(b.Created)
			}
		}
		return a.seq < b.seq
	}
	sort.Slice(all, func(i, j int) bool {
		if desc {
			return less(all[j], all[i])
		}
		return less(all[i], all[j])
	})
	start := 0
	if marker := q.Get("marker"); marker != "" {
		idx := slices.IndexFunc(all, func(img *image) bool { return img.ID == marker })
		if idx < 0 {
			s.mu.Unlock()
			glanceError(w, http.StatusBadRequest, "marker not found: "+marker)
			return
		}
		start = idx + 1
	}
	end := min(len(all), start+limit)
	page := make([]any, 0, end-start)
	for _, img := range all[start:end] {
		page = append(page, imageJSON(img))
	}
	s.mu.Unlock()

	body := map[string]any{"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"}
	if len(page) > 0 && len(page) == limit {
		next := url.Values{}
		for k, vals := range q {
			if k != "marker" {
				next[k] = vals
			}
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("marker", all[end-1].ID)
		body["next"] = "/v2/images?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) createImage(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if err := decodeJSON(r, &body); err != nil {
		glanceError(w, http.StatusBadRequest, err.Error())
		return
	}
	img := Image{Status: "queued", Properties: map[string]string{}}
	for k, raw := range body {
		var str string
		switch k {
		case "id":
			_ = json.Unmarshal(raw, &img.ID)
		case "name":
			_ = json.Unmarshal(raw, &img.Name)
		case "visibility":
			_ = json.Unmarshal(raw, &img.Visibility)
		case "tags":
			_ = json.Unmarshal(raw, &img.Tags)
		case "container_format", "disk_format", "min_disk", "min_ram", "protected", "os_hidden":
		default:
			if err := json.Unmarshal(raw, &str); err != nil {
				glanceError(w, http.StatusBadRequest, fmt.Sprintf("property %s must be a string", k))
				return
			}
			img.Properties[k] = str
		}
	}
	img = s.AddImage(img)
	s.mu.Lock()
	body2 := imageJSON(s.images[img.ID])
	s.mu.Unlock()
	w.Header().Set("Location", s.endpoint+"/image/v2/images/"+img.ID)
	writeJSON(w, http.StatusCreated, body2)
}
