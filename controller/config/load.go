package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults, as documented in doc.go.
const (
	DefaultMaxSurge           = 1
	DefaultMaxUnavailable     = 0
	DefaultHealthInterval     = 5 * time.Second
	DefaultHealthTimeout      = 2 * time.Second
	DefaultHealthyThreshold   = 3
	DefaultUnhealthyThreshold = 3
	DefaultGrace              = 60 * time.Second
	DefaultHTTPPath           = "/"
)

// Limits that come from Nova.
const (
	maxCount       = 10000
	maxUserData    = 65535 // bytes of base64, Nova's limit
	maxMetadata    = 100   // pairs; Nova allows 128 and Phoenix needs some
	maxMetaLength  = 255
	reservedPrefix = "phoenix:"
)

var (
	groupName   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
	metadataKey = regexp.MustCompile(`^[A-Za-z0-9-_:. ]{1,255}$`)
)

// Load reads, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Problems: []Problem{{Message: fmt.Sprintf("cannot read the file: %v", errors.Unwrap(err))}}}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse reads a configuration from data. name is what messages call the
// file; baseDir resolves relative user_data_file paths.
func Parse(name string, data []byte, baseDir string) (*Config, error) {
	fail := func(p ...Problem) (*Config, error) { return nil, &Error{File: name, Problems: p} }

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(Problem{Message: "the file is empty: expected a mapping with `groups:`"})
		}
		return fail(Problem{Message: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")})
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fail(Problem{Line: extra.Line, Message: "more than one YAML document: expected exactly one"})
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return fail(Problem{Message: "the file is empty: expected a mapping with `groups:`"})
		}
		doc = doc.Content[0]
	}
	if isNull(doc) {
		return fail(Problem{Message: "the file has no settings: expected a mapping with `groups:`"})
	}

	cfg := &Config{Path: name}
	d := &decoder{lines: map[string]int{}}
	d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
	if len(d.problems) == 0 {
		applyDefaults(cfg, d.lines)
		v := validator{decoder: d, baseDir: baseDir}
		v.config(cfg)
	}
	if len(d.problems) > 0 {
		return fail(d.problems...)
	}
	return cfg, nil
}

// applyDefaults fills every field the file did not write. given tells
// written fields apart from zero ones, so "grace: 0s" stays zero and
// "healthy_threshold: 0" is refused rather than silently defaulted.
func applyDefaults(cfg *Config, given map[string]int) {
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		unset := func(field string) bool {
			_, ok := given[path+"."+field]
			return !ok
		}
		if unset("rollout.max_surge") {
			g.Rollout.MaxSurge = IntOrPercent{Value: DefaultMaxSurge}
		}
		if unset("rollout.max_unavailable") {
			g.Rollout.MaxUnavailable = IntOrPercent{Value: DefaultMaxUnavailable}
		}
		h := &g.Health
		if unset("health.interval") {
			h.Interval = Duration(DefaultHealthInterval)
		}
		if unset("health.timeout") {
			h.Timeout = Duration(min(DefaultHealthTimeout, h.Interval.D()))
		}
		if unset("health.healthy_threshold") {
			h.HealthyThreshold = DefaultHealthyThreshold
		}
		if unset("health.unhealthy_threshold") {
			h.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
		if unset("health.grace") {
			h.Grace = Duration(DefaultGrace)
		}
		if h.HTTP != nil && unset("health.http.path") {
			h.HTTP.Path = DefaultHTTPPath
		}
	}
}

type validator struct {
	*decoder
	baseDir string
}

func (v *validator) at(path string) int {
	for p := path; p != ""; {
		if line, ok := v.lines[p]; ok {
			return line
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (v *validator) bad(path, format string, args ...any) {
	v.problem(path, v.at(path), format, args...)
}

func (v *validator) config(cfg *Config) {
	if len(cfg.Groups) == 0 {
		v.bad("groups", "expected at least one group")
		return
	}
	names := map[string]int{}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		if first, dup := names[g.Name]; dup && g.Name != "" {
			v.bad(path+".name", "group %q is defined twice (first as groups[%d])", g.Name, first)
		}
		names[g.Name] = i
		v.group(g, path)
	}
}

func (v *validator) group(g *Group, path string) {
	switch {
	case g.Name == "":
		v.bad(path+".name", "a group needs a name")
	case !groupName.MatchString(g.Name):
		v.bad(path+".name", "expected lower-case letters, digits and inner dashes, at most 40 characters (it becomes a Nova tag and server names), got %q", g.Name)
	}
	if g.Count < 1 || g.Count > maxCount {
		v.bad(path+".count", "expected a count from 1 to %d, got %d", maxCount, g.Count)
	}
	v.image(g.Image, path+".image")
	if strings.TrimSpace(g.Flavor) == "" {
		v.bad(path+".flavor", "a flavor name or ID is required")
	}
	if len(g.Networks) == 0 {
		v.bad(path+".networks", "expected at least one network name or ID")
	}
	v.distinct(g.Networks, path+".networks", "network")
	for i, s := range g.SecurityGroups {
		if strings.TrimSpace(s) == "" {
			v.bad(fmt.Sprintf("%s.security_groups[%d]", path, i), "expected a security group name, got an empty one")
		}
	}
	v.distinct(g.AvailabilityZones, path+".availability_zones", "availability zone")
	v.userData(g, path+".user_data_file")
	v.metadata(g.Metadata, path+".metadata")
	v.rollout(g, path+".rollout")
	v.health(&g.Health, path+".health")
}

func (v *validator) distinct(list []string, path, what string) {
	seen := map[string]bool{}
	for i, s := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case strings.TrimSpace(s) == "":
			v.bad(at, "expected a %s name or ID, got an empty one", what)
		case seen[s]:
			v.bad(at, "%s %q is listed twice", what, s)
		}
		seen[s] = true
	}
}

func (v *validator) image(s ImageSelector, path string) {
	bySearch := s.Name != "" || len(s.Properties) > 0 || len(s.Tags) > 0
	switch {
	case s.ID != "" && (bySearch || s.Newest):
		v.bad(path, "id selects one image by itself: remove name, properties, tags and newest, or remove id")
	case s.ID == "" && !bySearch:
		v.bad(path, "expected an image id, or a name and/or properties and tags to search by")
	}
	for k := range s.Properties {
		if strings.TrimSpace(k) == "" {
			v.bad(path+".properties", "expected property names, got an empty one")
		}
	}
	for i, t := range s.Tags {
		if t == "" || len(t) > 255 {
			v.bad(fmt.Sprintf("%s.tags[%d]", path, i), "expected a tag of 1 to 255 characters, got %q", t)
		}
	}
}

func (v *validator) userData(g *Group, path string) {
	if g.UserDataFile == "" {
		return
	}
	file := g.UserDataFile
	if !filepath.IsAbs(file) {
		file = filepath.Join(v.baseDir, file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		v.bad(path, "cannot read %s: %v", file, errors.Unwrap(err))
		return
	}
	if n := base64.StdEncoding.EncodedLen(len(data)); n > maxUserData {
		v.bad(path, "%s is %d bytes, %d once base64-encoded; Nova accepts at most %d", file, len(data), n, maxUserData)
		return
	}
	g.UserData = data
}

func (v *validator) metadata(md map[string]string, path string) {
	if len(md) > maxMetadata {
		v.bad(path, "expected at most %d pairs, got %d", maxMetadata, len(md))
	}
	for k, val := range md {
		at := join(path, k)
		switch {
		case strings.HasPrefix(k, reservedPrefix):
			v.bad(at, "keys starting with %q are Phoenix's own record on each server", reservedPrefix)
		case !metadataKey.MatchString(k):
			v.bad(at, "expected a key of 1 to 255 letters, digits, spaces and -_:. characters")
		}
		if len(val) > maxMetaLength {
			v.bad(at, "expected a value of at most %d characters, got %d", maxMetaLength, len(val))
		}
	}
}

func (v *validator) rollout(g *Group, path string) {
	r := g.Rollout
	if g.Count < 1 {
		return
	}
	surge, unavailable := r.MaxSurge.Resolve(g.Count, true), r.MaxUnavailable.Resolve(g.Count, false)
	if surge == 0 && unavailable == 0 {
		v.bad(path, "max_surge %s and max_unavailable %s both come to 0 servers for a count of %d: no server could ever be replaced; allow a surge (needs quota for extra servers) or some unavailability",
			r.MaxSurge, r.MaxUnavailable, g.Count)
	}
	if unavailable > g.Count {
		v.bad(path+".max_unavailable", "expected at most the group's count %d, got %d", g.Count, unavailable)
	}
}

func (v *validator) health(h *Health, path string) {
	if h.HTTP != nil && h.TCP != nil {
		v.bad(path, "http and tcp are alternatives: configure one check, not both")
	}
	if h.HTTP != nil {
		v.port(h.HTTP.Port, path+".http.port")
		if !strings.HasPrefix(h.HTTP.Path, "/") {
			v.bad(path+".http.path", "expected a path starting with \"/\", got %q", h.HTTP.Path)
		}
		if s := h.HTTP.ExpectStatus; s != 0 && (s < 100 || s > 599) {
			v.bad(path+".http.expect_status", "expected an HTTP status from 100 to 599 (or leave it out to accept any 2xx), got %d", s)
		}
	}
	if h.TCP != nil {
		v.port(h.TCP.Port, path+".tcp.port")
	}
	if h.HTTP == nil && h.TCP == nil {
		for _, f := range []string{"interval", "timeout", "healthy_threshold", "unhealthy_threshold", "grace"} {
			if _, ok := v.lines[path+"."+f]; ok {
				v.bad(path+"."+f, "has no effect without a check: add health.http or health.tcp (without one, Nova's ACTIVE status is the only health signal)")
			}
		}
		return
	}
	if h.Interval <= 0 {
		v.bad(path+".interval", "expected a duration above zero")
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		v.bad(path+".timeout", "expected a duration above zero and at most the interval %s, got %s", h.Interval.D(), h.Timeout.D())
	}
	if h.HealthyThreshold < 1 {
		v.bad(path+".healthy_threshold", "expected at least 1, got %d", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 1 {
		v.bad(path+".unhealthy_threshold", "expected at least 1, got %d", h.UnhealthyThreshold)
	}
}

func (v *validator) port(p int, path string) {
	if p < 1 || p > 65535 {
		v.bad(path, "expected a port from 1 to 65535, got %d", p)
	}
}
