package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	pathpkg "path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Defaults, as documented in doc.go.
const (
	DefaultMaxSurge            = 1
	DefaultMaxUnavailable      = 0
	DefaultHealthInterval      = 5 * time.Second
	DefaultHealthTimeout       = 2 * time.Second
	DefaultHealthyThreshold    = 3
	DefaultUnhealthyThreshold  = 3
	DefaultGrace               = 60 * time.Second
	DefaultHTTPPath            = "/"
	DefaultDrain               = 30 * time.Second
	DefaultInterval            = time.Minute
	DefaultBackupKeep          = 3
	DefaultBackupTimeout       = 30 * time.Minute
	DefaultMaxUnhealthyPercent = 40
	DefaultMaxFailures         = 3
	DefaultProgressDeadline    = 10 * time.Minute
	DefaultParallelGroups      = 4
	DefaultListen              = "127.0.0.1:9090"
	DefaultMemberWeight        = 1
	DefaultEtcdPrefix          = "/phoenix/"
	DefaultLeaseTTL            = 15 * time.Second
	// MinLeaseTTL is the shortest lease etcd grants with its default
	// election timeout; a shorter one would be lengthened silently.
	MinLeaseTTL = 2 * time.Second
)

// Limits that come from Nova and Glance.
const (
	maxCount       = 10000
	maxUserData    = 65535 // bytes of base64, Nova's limit
	maxMetadata    = 100   // pairs; Nova allows 128 and Phoenix needs some
	maxMetaLength  = 255   // characters, for metadata keys and values
	maxTagLength   = 255   // characters, Glance's limit for image tags
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
		return nil, &Error{File: path, Problems: []Problem{{Message: fmt.Sprintf("cannot read the file: %v", unwrapPath(err))}}}
	}
	return Parse(path, data, filepath.Dir(path))
}

// Parse reads a configuration from data. name is what messages call the
// file, and becomes Config.Path; baseDir resolves relative user_data_file
// paths. A configuration that is not accepted returns a *Error listing
// every problem found.
func Parse(name string, data []byte, baseDir string) (*Config, error) {
	fail := func(p ...Problem) (*Config, error) { return nil, &Error{File: name, Problems: p} }
	const empty = "the file has no settings: expected a mapping with `groups:` at the top level"

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return fail(Problem{Message: "the file is empty: expected a mapping with `groups:` at the top level"})
		}
		return fail(syntaxProblem(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fail(Problem{Line: extra.Line, Message: "a second YAML document (after ---): expected exactly one"})
	} else if !errors.Is(err, io.EOF) {
		return fail(syntaxProblem(err))
	}
	// Decode gives a document node holding the one root node (a null for
	// an empty document such as "---"); the root cannot be an alias, as
	// no anchor precedes it.
	doc := root.Content[0]
	if isNull(doc) {
		return fail(Problem{Message: empty})
	}

	cfg := &Config{Path: name}
	d := newDecoder()
	d.lines[""] = doc.Line
	d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
	if !d.tooMuch {
		applyDefaults(cfg, d.written)
		v := validator{decoder: d, baseDir: baseDir}
		v.config(cfg)
	}
	if len(d.problems) > 0 {
		// Top to bottom, as the operator reads the file.
		sort.SliceStable(d.problems, func(i, j int) bool { return d.problems[i].Line < d.problems[j].Line })
		return fail(d.problems...)
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxProblem turns a YAML parser error into a problem with its line.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Message: "not valid YAML: " + m[2]}
	}
	return Problem{Message: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// applyDefaults fills every field the file did not write. written tells
// written fields apart from zero ones, so "grace: 0s" stays zero and
// "healthy_threshold: 0" is refused rather than silently defaulted.
func applyDefaults(cfg *Config, written map[string]bool) {
	c := &cfg.Controller
	if !written["controller.interval"] {
		c.Interval = Duration(DefaultInterval)
	}
	if !written["controller.parallel_groups"] {
		c.ParallelGroups = DefaultParallelGroups
	}
	if !written["controller.listen"] {
		c.Listen = DefaultListen
	}
	if e := c.Coordination.Etcd; e != nil {
		if !written["controller.coordination.etcd.prefix"] {
			e.Prefix = DefaultEtcdPrefix
		}
		if !written["controller.coordination.etcd.lease_ttl"] {
			e.LeaseTTL = Duration(DefaultLeaseTTL)
		}
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		unset := func(field string) bool { return !written[fmt.Sprintf("groups[%d].%s", i, field)] }
		r := &g.Rollout
		if !r.MaxSurge.Set {
			r.MaxSurge = IntOrPercent{Value: DefaultMaxSurge}
		}
		if !r.MaxUnavailable.Set {
			r.MaxUnavailable = IntOrPercent{Value: DefaultMaxUnavailable}
		}
		// MinReady's default, 0s, is the zero value.
		if unset("rollout.max_failures") {
			r.MaxFailures = DefaultMaxFailures
		}
		if unset("rollout.progress_deadline") {
			r.ProgressDeadline = Duration(DefaultProgressDeadline)
		}
		h := &g.Health
		if unset("health.interval") {
			h.Interval = Duration(DefaultHealthInterval)
		}
		if unset("health.rise_interval") {
			h.RiseInterval = h.Interval / 5
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
		if !h.MaxUnhealthy.Set {
			h.MaxUnhealthy = IntOrPercent{Value: DefaultMaxUnhealthyPercent, Percent: true}
		}
		if h.HTTP != nil && unset("health.http.path") {
			h.HTTP.Path = DefaultHTTPPath
		}
		// ExpectStatus's default, 0 (any 2xx), is the zero value.
		if unset("rollout.strategy") {
			g.Rollout.Strategy = StrategyReplace
		}
		if unset("backup.volumes") {
			g.Backup.Volumes = VolumesNone
		}
		if unset("backup.keep") {
			g.Backup.Keep = DefaultBackupKeep
		}
		if unset("backup.timeout") {
			g.Backup.Timeout = Duration(DefaultBackupTimeout)
		}
		if o := g.Traffic.Octavia; o != nil {
			if unset("traffic.octavia.weight") {
				o.Weight = DefaultMemberWeight
			}
			if unset("traffic.octavia.drain") {
				o.Drain = Duration(DefaultDrain)
			}
			if o.Network == "" && len(g.Networks) > 0 {
				o.Network = g.Networks[0]
			}
		}
		if f := g.Traffic.FloatingIP; f != nil {
			if unset("traffic.floating_ip.drain") {
				f.Drain = Duration(DefaultDrain)
			}
			if f.Network == "" && len(g.Networks) > 0 {
				f.Network = g.Networks[0]
			}
		}
	}
}

type validator struct {
	*decoder
	baseDir string
}

// line returns the line of path, or of the nearest enclosing field the
// file mentions.
func (v *validator) line(path string) int {
	for p := path; ; {
		if line, ok := v.lines[p]; ok {
			return line
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return v.lines[""]
		}
		p = p[:i]
	}
}

// echoes reports whether a problem at path, judged from the values at
// deps, would only echo a value the decoder already refused: one at path
// or around it, or at or inside one of deps.
func (v *validator) echoes(path string, deps []string) bool {
	for f := range v.failed {
		if within(path, f) {
			return true
		}
		for _, dep := range deps {
			if within(dep, f) || within(f, dep) {
				return true
			}
		}
	}
	return false
}

// within reports whether path is inside (or is) the field outer.
func within(path, outer string) bool {
	if outer == "" {
		return true
	}
	rest, ok := strings.CutPrefix(path, outer)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// bad reports a problem with the value at path.
func (v *validator) bad(path, format string, args ...any) {
	v.badFrom(path, []string{path}, format, args...)
}

// badFrom reports a problem at path that is judged from the values at
// deps.
func (v *validator) badFrom(path string, deps []string, format string, args ...any) {
	if v.echoes(path, deps) {
		return
	}
	v.problem(path, v.line(path), format, args...)
}

func (v *validator) config(cfg *Config) {
	v.controller(&cfg.Controller)
	if len(cfg.Groups) == 0 {
		v.bad("groups", "expected at least one group")
		return
	}
	names := map[string]int{}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		path := fmt.Sprintf("groups[%d]", i)
		if first, dup := names[g.Name]; dup && g.Name != "" {
			v.bad(path+".name", "group %q is defined twice (first as groups[%d], line %d)", g.Name, first, v.line(fmt.Sprintf("groups[%d].name", first)))
		} else {
			names[g.Name] = i
		}
		v.group(g, path)
	}
}

func (v *validator) controller(c *Controller) {
	const path = "controller"
	if c.Interval < Duration(time.Second) {
		v.bad(path+".interval", "expected a duration of at least 1s, got %s", c.Interval)
	}
	if c.ParallelGroups < 1 || c.ParallelGroups > 1000 {
		v.bad(path+".parallel_groups", "expected from 1 to 1000 groups at a time, got %d", c.ParallelGroups)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.bad(path+".listen", "expected host:port such as 127.0.0.1:9090, got %q", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.bad(path+".listen", "expected a port from 0 to 65535 in %q", c.Listen)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		v.badFrom(path, []string{path + ".tls_cert_file", path + ".tls_key_file"}, "tls_cert_file and tls_key_file go together: set both for HTTPS, or neither")
	}
	for _, f := range []struct {
		field string
		file  *string
	}{{"tls_cert_file", &c.TLSCertFile}, {"tls_key_file", &c.TLSKeyFile}, {"webhook_secret_file", &c.WebhookSecretFile}} {
		if *f.file == "" {
			continue
		}
		// Relative to the configuration file, like user_data_file; kept
		// absolute so that a reload or a changed working directory
		// finds the same file.
		file := *f.file
		if !filepath.IsAbs(file) {
			file = filepath.Join(v.baseDir, file)
		}
		*f.file = file
		if info, err := os.Stat(file); err != nil {
			v.bad(path+"."+f.field, "cannot read %s: %v", file, unwrapPath(err))
		} else if !info.Mode().IsRegular() {
			v.bad(path+"."+f.field, "%s is not a regular file", file)
		}
	}
	for i, u := range c.Notify {
		at := fmt.Sprintf("%s.notify[%d]", path, i)
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			v.bad(at, "expected an http or https URL, got %q", u)
		}
	}
	if e := c.Coordination.Etcd; e != nil {
		v.etcd(e, path+".coordination.etcd")
	}
}

// etcd checks the cluster replicas coordinate through.
func (v *validator) etcd(e *Etcd, path string) {
	if len(e.Endpoints) == 0 {
		v.bad(path+".endpoints", "expected at least one etcd client URL such as https://etcd-1:2379")
	}
	for i, ep := range e.Endpoints {
		at := fmt.Sprintf("%s.endpoints[%d]", path, i)
		hostPort := ep
		if scheme, rest, ok := strings.Cut(ep, "://"); ok {
			if scheme != "http" && scheme != "https" {
				v.bad(at, "expected an http or https URL, or host:port, got %q", ep)
				continue
			}
			hostPort = rest
		}
		if host, port, err := net.SplitHostPort(hostPort); err != nil || host == "" || port == "" {
			v.bad(at, "expected an etcd client URL such as https://etcd-1:2379, got %q", ep)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			v.bad(at, "expected a port from 1 to 65535 in %q", ep)
		}
	}
	if len(e.Prefix) < 2 || !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		v.bad(path+".prefix", "expected a key prefix that starts and ends with a slash, such as /phoenix/, got %q", e.Prefix)
	}
	switch ttl := e.LeaseTTL.D(); {
	case ttl < MinLeaseTTL:
		v.bad(path+".lease_ttl", "expected a duration of at least %s (etcd grants no shorter lease), got %s", MinLeaseTTL, e.LeaseTTL)
	case ttl%time.Second != 0:
		v.bad(path+".lease_ttl", "expected whole seconds (etcd leases count in seconds), got %s", e.LeaseTTL)
	}
	t := &e.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.badFrom(path+".tls", []string{path + ".tls.cert_file", path + ".tls.key_file"}, "cert_file and key_file go together: set both for a client certificate, or neither")
	}
	for _, f := range []struct {
		field string
		file  *string
	}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}} {
		if *f.file == "" {
			continue
		}
		file := *f.file
		if !filepath.IsAbs(file) {
			file = filepath.Join(v.baseDir, file)
		}
		*f.file = file
		if info, err := os.Stat(file); err != nil {
			v.bad(path+".tls."+f.field, "cannot read %s: %v", file, unwrapPath(err))
		} else if !info.Mode().IsRegular() {
			v.bad(path+".tls."+f.field, "%s is not a regular file", file)
		}
	}
}

func (v *validator) group(g *Group, path string) {
	switch {
	case g.Name == "":
		v.bad(path+".name", "a group needs a name")
	case !groupName.MatchString(g.Name):
		v.bad(path+".name", "expected 1 to 40 lower-case letters, digits and inner dashes (the name goes into a Nova tag and into server names), got %q", g.Name)
	}
	switch {
	case !v.written[path+".count"]:
		v.bad(path+".count", "a group needs a count of servers, from 1 to %d", maxCount)
	case g.Count < 1 || g.Count > maxCount:
		v.bad(path+".count", "expected a count from 1 to %d, got %d", maxCount, g.Count)
	}
	v.image(g.Image, path+".image")
	if strings.TrimSpace(g.Flavor) == "" {
		v.bad(path+".flavor", "a flavor name or ID is required")
	}
	if len(g.Networks) == 0 {
		v.bad(path+".networks", "expected at least one network name or ID")
	}
	v.distinct(g.Networks, path+".networks", "a network name or ID", "network")
	for i, s := range g.SecurityGroups {
		if strings.TrimSpace(s) == "" {
			v.bad(fmt.Sprintf("%s.security_groups[%d]", path, i), "expected a security group name or ID, got an empty one")
		}
	}
	v.distinct(g.AvailabilityZones, path+".availability_zones", "an availability zone name", "availability zone")
	v.userData(g, path+".user_data_file")
	v.metadata(g.Metadata, path+".metadata")
	v.rollout(g, path)
	if g.MaxAge != 0 && g.MaxAge < Duration(time.Hour) {
		v.bad(path+".max_age", "expected 1h or more (or leave it out for no age limit), got %s: a server must live long enough to be worth its boot", g.MaxAge)
	}
	v.health(&g.Health, path+".health")
	v.traffic(g, path+".traffic")
	b := g.Backup
	if b.Keep < 0 {
		v.bad(path+".backup.keep", "expected 0 (keep every snapshot) or more, got %d", b.Keep)
	}
	if b.Timeout < Duration(time.Second) {
		v.bad(path+".backup.timeout", "expected a duration of at least 1s, got %s", b.Timeout)
	}
	if b.Volumes != VolumesNone && b.Volumes != VolumesSnapshot {
		v.bad(path+".backup.volumes", "expected %s or %s, got %q", VolumesSnapshot, VolumesNone, b.Volumes)
	}
	switch {
	case b.Every != 0 && b.Every < Duration(time.Hour):
		v.bad(path+".backup.every", "expected a duration of at least 1h (or leave it out for no schedule), got %s", b.Every)
	case b.Every != 0 && b.Volumes != VolumesSnapshot:
		v.badFrom(path+".backup.every", []string{path + ".backup.every", path + ".backup.volumes"}, "a schedule snapshots data volumes: set backup.volumes to snapshot, or remove every")
	}
	v.stateful(g, path)
}

// stateful checks a group whose data volumes move to the replacement.
func (v *validator) stateful(g *Group, path string) {
	st, r := g.Stateful, g.Rollout
	if r.Strategy != StrategyReplace && r.Strategy != StrategyRebuild {
		v.bad(path+".rollout.strategy", "expected %s (new servers replace the old) or %s (Nova rebuilds each server in place), got %q", StrategyReplace, StrategyRebuild, r.Strategy)
	}
	if r.Strategy == StrategyRebuild && g.Count >= 1 && r.MaxUnavailable.Resolve(g.Count, false) < 1 {
		v.badFrom(path+".rollout.max_unavailable", []string{path + ".rollout.max_unavailable", path + ".rollout.strategy"},
			"strategy rebuild takes each server out of service while Nova reimages it: expected max_unavailable of at least 1, got %s", r.MaxUnavailable)
	}
	if st == nil {
		return
	}
	at := path + ".stateful.volumes"
	sel := st.Volumes
	if sel.Name == "" && len(sel.Metadata) == 0 {
		v.bad(at, "expected a name pattern and/or metadata that pick the data volumes which move to the replacement")
	}
	if sel.Name != "" {
		if _, err := pathpkg.Match(sel.Name, ""); err != nil {
			v.bad(at+".name", "expected a shell pattern such as data-*, got %q: %v", sel.Name, err)
		}
	}
	if r.Strategy == StrategyRebuild {
		v.badFrom(path+".stateful", []string{path + ".stateful", path + ".rollout.strategy"},
			"strategy rebuild keeps every volume on its server: stateful (which moves volumes to a new server) does not apply; remove one of them")
	} else if g.Count >= 1 && r.MaxUnavailable.Resolve(g.Count, false) < 1 {
		// Said where the operator wrote something: at max_unavailable if
		// written, else at stateful.
		at := path + ".rollout.max_unavailable"
		if !v.written[at] {
			at = path + ".stateful"
		}
		v.badFrom(at, []string{path + ".rollout.max_unavailable", path + ".stateful"},
			"a stateful group stops the old server before its volume moves, so each handover is a short outage: expected rollout.max_unavailable of at least 1, got %s", r.MaxUnavailable)
	} else if g.Count >= 1 && r.MaxSurge.Resolve(g.Count, true) < 1 {
		v.badFrom(path+".rollout.max_surge", []string{path + ".rollout.max_surge", path + ".stateful"},
			"a stateful group boots the replacement before the old server stops, to move the volume to it: expected max_surge of at least 1, got %s", r.MaxSurge)
	}
}

// maxMemberWeight is Octavia's largest member weight.
const maxMemberWeight = 256

func (v *validator) traffic(g *Group, path string) {
	o, f := g.Traffic.Octavia, g.Traffic.FloatingIP
	if o != nil && f != nil {
		v.badFrom(path, []string{path + ".octavia", path + ".floating_ip"}, "octavia and floating_ip are alternatives: a floating IP serves one server, a pool serves many; configure one")
		return
	}
	onNetwork := func(network, at string) {
		if network != "" && len(g.Networks) > 0 && !slices.Contains(g.Networks, network) {
			v.badFrom(at, []string{at, strings.TrimSuffix(path, ".traffic") + ".networks"},
				"expected one of the group's networks (%s), got %q: the address a server has there is where traffic is sent",
				strings.Join(g.Networks, ", "), network)
		}
	}
	if o != nil {
		at := path + ".octavia"
		if strings.TrimSpace(o.Pool) == "" {
			v.bad(at+".pool", "a pool name or ID is required")
		}
		v.port(o.ProtocolPort, at+".protocol_port")
		if o.Weight < 1 || o.Weight > maxMemberWeight {
			v.bad(at+".weight", "expected a weight from 1 to %d (weight 0 is Phoenix's drain and would never send traffic), got %d", maxMemberWeight, o.Weight)
		}
		onNetwork(o.Network, at+".network")
	}
	if f != nil {
		at := path + ".floating_ip"
		switch {
		case f.Address != "" && f.Pool != "":
			v.bad(at, "address and pool are alternatives: name the floating IP to move, or the external network to allocate one from")
		case f.Address == "" && f.Pool == "":
			v.bad(at, "expected an address (an existing floating IP) or a pool (an external network to allocate one from)")
		case f.Address != "":
			if ip := net.ParseIP(f.Address); ip == nil {
				v.bad(at+".address", "expected an IP address, got %q", f.Address)
			}
		}
		if g.Count > 1 {
			v.badFrom(at, []string{at, strings.TrimSuffix(path, ".traffic") + ".count"},
				"a floating IP points at one server, and this group has count %d: put the servers behind traffic.octavia instead, or set count: 1", g.Count)
		}
		onNetwork(f.Network, at+".network")
	}
}

// distinct checks a list of names: none empty, none twice.
func (v *validator) distinct(list []string, path, expected, what string) {
	seen := map[string]int{}
	for i, s := range list {
		at := fmt.Sprintf("%s[%d]", path, i)
		if strings.TrimSpace(s) == "" {
			v.bad(at, "expected %s, got an empty one", expected)
			continue
		}
		if first, dup := seen[s]; dup {
			v.bad(at, "%s %q is listed twice (also %s[%d])", what, s, path, first)
			continue
		}
		seen[s] = i
	}
}

// glanceFields are the image attributes and list options of Glance that
// are not custom properties: a filter on one of them would never match
// (Phoenix compares custom properties) or would change the listing itself.
var glanceFields = []string{
	"checksum", "container_format", "created_at", "direct_url", "disk_format", "file",
	"id", "limit", "locations", "marker", "member_status", "metadata", "min_disk", "min_ram",
	"name", "openstack-image-import-methods", "openstack-image-store-ids", "os_hidden", "owner",
	"protected", "schema", "self", "size", "size_max", "size_min", "sort", "sort_dir", "sort_key",
	"status", "tag", "tags", "updated_at", "virtual_size", "visibility",
}

func (v *validator) image(s ImageSelector, path string) {
	bySearch := s.Name != "" || len(s.Properties) > 0 || len(s.Tags) > 0
	deps := []string{path}
	switch {
	case s.ID != "" && (bySearch || s.Newest):
		var extra []string
		for _, f := range []struct {
			name string
			set  bool
		}{{"name", s.Name != ""}, {"properties", len(s.Properties) > 0}, {"tags", len(s.Tags) > 0}, {"newest", s.Newest}} {
			if f.set {
				extra = append(extra, f.name)
			}
		}
		v.badFrom(path, deps, "id selects one image by itself: remove %s, or remove id", strings.Join(extra, " and "))
	case s.ID == "" && !bySearch:
		v.badFrom(path, deps, "expected an image id, or a name, properties or tags to search by (with newest: true to take the most recent match)")
	}
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		at := join(path+".properties", k)
		switch {
		case strings.TrimSpace(k) == "":
			v.bad(at, "expected a property name, got an empty one")
		case slices.Contains(glanceFields, k):
			v.bad(at, "%q is one of Glance's own image fields or list options, not a custom property; select by image name or tags, or by a custom property such as os_distro", k)
		}
	}
	if s.MaxAge != 0 && s.MaxAge < Duration(time.Hour) {
		v.bad(path+".max_age", "expected a duration of at least 1h (gold images are rebuilt in days), got %s", s.MaxAge)
	}
	for i, t := range s.Tags {
		if t == "" || utf8.RuneCountInString(t) > maxTagLength {
			v.bad(fmt.Sprintf("%s.tags[%d]", path, i), "expected a tag of 1 to %d characters, got %q", maxTagLength, t)
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
	data, size, err := readUserData(file)
	if err != nil {
		v.bad(path, "cannot read %s: %v", file, err)
		return
	}
	if n := base64.StdEncoding.EncodedLen(int(size)); n > maxUserData {
		v.bad(path, "%s is %d bytes, %d once base64-encoded; Nova accepts at most %d", file, size, n, maxUserData)
		return
	}
	g.UserData = data
}

// readUserData reads a user data file, refusing what is not a regular file
// (a FIFO or a device could block or never end) and reading no more than
// what Nova could accept. size is the file's size, or the bytes read if
// the file grew meanwhile.
func readUserData(file string) (data []byte, size int64, err error) {
	info, err := os.Stat(file)
	if err != nil {
		return nil, 0, unwrapPath(err)
	}
	switch {
	case info.IsDir():
		return nil, 0, errors.New("it is a directory")
	case !info.Mode().IsRegular():
		return nil, 0, errors.New("it is not a regular file")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, unwrapPath(err)
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, maxUserData))
	if err != nil {
		return nil, 0, unwrapPath(err)
	}
	return data, max(info.Size(), int64(len(data))), nil
}

// unwrapPath drops the path from an *fs.PathError, which the message
// names already.
func unwrapPath(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

func (v *validator) metadata(md map[string]string, path string) {
	if len(md) > maxMetadata {
		v.bad(path, "expected at most %d pairs, got %d", maxMetadata, len(md))
	}
	for _, k := range slices.Sorted(maps.Keys(md)) {
		at := join(path, k)
		switch {
		case strings.HasPrefix(k, reservedPrefix):
			v.bad(at, "keys starting with %q are reserved: Phoenix keeps its own record on each server under them", reservedPrefix)
		case !metadataKey.MatchString(k):
			v.bad(at, "expected a key of 1 to %d letters, digits, spaces and the characters - _ : . (Nova's rule), got %q", maxMetaLength, k)
		}
		if n := utf8.RuneCountInString(md[k]); n > maxMetaLength {
			v.bad(at, "expected a value of at most %d characters, got %d", maxMetaLength, n)
		}
	}
}

func (v *validator) rollout(g *Group, group string) {
	r, path := g.Rollout, group+".rollout"
	if g.Count < 1 {
		return // reported at count
	}
	deps := []string{group + ".count", path + ".max_surge", path + ".max_unavailable"}
	surge, unavailable := r.MaxSurge.Resolve(g.Count, true), r.MaxUnavailable.Resolve(g.Count, false)
	if surge == 0 && unavailable == 0 {
		v.badFrom(path, deps, "max_surge %s and max_unavailable %s both come to 0 servers for a count of %d, so no server could ever be replaced: allow a surge (needs quota for the extra servers) or some unavailability",
			r.MaxSurge, r.MaxUnavailable, g.Count)
	}
	if unavailable > g.Count {
		v.badFrom(path+".max_unavailable", deps, "expected at most the group's count %d, got %d", g.Count, unavailable)
	}
	if r.MaxFailures < 1 {
		v.bad(path+".max_failures", "expected at least 1 failed new server before a rollout halts, got %d", r.MaxFailures)
	}
	if r.Canary < 0 || r.Canary >= g.Count {
		v.badFrom(path+".canary", []string{path + ".canary", group + ".count"}, "expected from 0 to %d servers (fewer than count %d: a canary is a part of the group), got %d", g.Count-1, g.Count, r.Canary)
	}
	if r.Canary == 0 && (r.CanaryBake != 0 || r.PauseAfterCanary) {
		v.badFrom(path+".canary", []string{path + ".canary_bake", path + ".pause_after_canary"}, "canary_bake and pause_after_canary need a canary: set canary to the number of servers to replace first")
	}
	if r.ProgressDeadline < Duration(time.Second) {
		v.bad(path+".progress_deadline", "expected a duration of at least 1s, got %s", r.ProgressDeadline)
	}
}

func (v *validator) health(h *Health, path string) {
	checks := []string{path + ".http", path + ".tcp"}
	if h.HTTP != nil && h.TCP != nil {
		v.badFrom(path, checks, "http and tcp are alternatives: configure one check, not both")
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
		for _, f := range []string{"interval", "rise_interval", "timeout", "healthy_threshold", "unhealthy_threshold", "grace", "max_unhealthy"} {
			at := path + "." + f
			if v.written[at] {
				v.badFrom(at, append(checks, at), "has no effect without a check: add health.http or health.tcp, or remove it (without a check, Nova's ACTIVE status is the only health signal)")
			}
		}
		return
	}
	if h.Interval <= 0 {
		v.bad(path+".interval", "expected a duration above zero, got %s", h.Interval)
	}
	if h.Interval > 0 && (h.RiseInterval <= 0 || h.RiseInterval > h.Interval) {
		v.badFrom(path+".rise_interval", []string{path + ".rise_interval", path + ".interval"},
			"expected a duration above zero and at most the interval %s, got %s", h.Interval, h.RiseInterval)
	}
	if h.Timeout <= 0 || h.Timeout > h.Interval {
		v.badFrom(path+".timeout", []string{path + ".timeout", path + ".interval"},
			"expected a duration above zero and at most the interval %s, got %s", h.Interval, h.Timeout)
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
		if !v.written[path] {
			v.bad(path, "a port from 1 to 65535 is required")
			return
		}
		v.bad(path, "expected a port from 1 to 65535, got %d", p)
	}
}
