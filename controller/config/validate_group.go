package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
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
	// locationName fits a Nova metadata value and a Prometheus label
	// value, and reads well in both.
	locationName = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,63}$`)
)

// Bounds of a placement.
const (
	// minFailoverAfter keeps a location from being declared down by one
	// slow answer or one refused create: each failover boots and deletes
	// servers, and a flapping location would do so back and forth.
	minFailoverAfter = 10 * time.Second
	// maxLocationWeight: a weight is a share of the group's servers, and
	// no group has more than maxCount of them to share.
	maxLocationWeight = maxCount
)

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
	v.placement(g, path)
	v.promote(g, path)
}

// imageTag is a Glance tag Phoenix can add and remove by URL
// (PUT /v2/images/{id}/tags/{tag}): no slash, no control character.
var imageTag = regexp.MustCompile(`^[^/\x00-\x1f\x7f]+$`)

// promote checks a stage's gate: a tag Phoenix can write, a time to wait,
// and a group that can still take new images once it writes the tag.
func (v *validator) promote(g *Group, path string) {
	p := g.Promote
	if p == nil {
		return
	}
	at := path + ".promote"
	switch t := p.Tag; {
	case strings.TrimSpace(t) == "":
		v.bad(at+".tag", "expected the Glance tag to add to an image the group has run healthy, such as staged-ok")
	case utf8.RuneCountInString(t) > maxTagLength || !imageTag.MatchString(t) || strings.TrimSpace(t) != t:
		v.bad(at+".tag", "expected a tag of 1 to %d characters without a slash, a control character or spaces around it (Phoenix adds it by URL), got %q", maxTagLength, t)
	case slices.Contains(g.Image.Tags, t):
		v.badFrom(at+".tag", []string{at + ".tag", path + ".image.tags"},
			"the group's own image selector requires %q, the tag it adds: it would never take an image that has not passed it already; a later stage requires the tag, the stage that adds it does not", t)
	}
	if p.After < 0 {
		v.bad(at+".after", "expected a duration of 0 or more (how long every server of the image must have served healthy), got %s", p.After)
	}
	if g.Placement != nil {
		v.badFrom(at, []string{at, path + ".placement"},
			"a placed group runs its own image in each location (gold images are published per region), so one image cannot be promoted for it: promote from a group of one location")
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

// placement checks a group's locations: each one region of one cloud,
// named once, and some of them with a weight that gives them servers.
func (v *validator) placement(g *Group, path string) {
	p := g.Placement
	if p == nil {
		return
	}
	at := path + ".placement"
	if g.Stateful != nil {
		v.badFrom(at, []string{at, path + ".stateful"},
			"a stateful group moves each server's data volumes to its replacement, and a volume cannot move between regions or clouds: remove placement, or stateful")
	}
	if len(p.Locations) > 1 && g.Traffic.FloatingIP != nil {
		v.badFrom(at, []string{at, path + ".traffic.floating_ip"},
			"a floating IP belongs to one location and cannot follow the servers to another: use traffic.octavia with a pool in each location and DNS across their load balancers, or keep one location")
	}
	if p.FailoverAfter < Duration(minFailoverAfter) {
		v.bad(at+".failover_after", "expected a duration of at least %s, got %s: a location is down once its API or its creates fail this long, and a shorter time would move servers between locations on every passing hiccup",
			Duration(minFailoverAfter), p.FailoverAfter)
	}
	list := at + ".locations"
	if len(p.Locations) == 0 {
		v.bad(list, "expected at least one location, each a region and/or a cloud, such as {region: RegionOne}")
		return
	}
	type place struct{ cloud, region string }
	names, places := map[string]int{}, map[place]int{}
	sum, weightsOK := 0, true
	for i, l := range p.Locations {
		li := fmt.Sprintf("%s[%d]", list, i)
		blank := func(field, s string) bool { return v.written[li+"."+field] && strings.TrimSpace(s) == "" }
		cloudBlank, regionBlank := blank("cloud", l.Cloud), blank("region", l.Region)
		if cloudBlank {
			v.bad(li+".cloud", "expected a clouds.yaml entry, got an empty one (leave cloud out for the top-level cloud)")
		}
		if regionBlank {
			v.bad(li+".region", "expected a region name, got an empty one (leave region out for the cloud's default region)")
		}
		where := !cloudBlank && !regionBlank && (l.Cloud != "" || l.Region != "")
		if !where && !cloudBlank && !regionBlank {
			v.badFrom(li, []string{li + ".cloud", li + ".region"},
				"expected a region and/or a cloud: a location is one region of one cloud, such as {region: RegionTwo} or {cloud: othercloud, region: RegionTwo}")
		}

		// One region of one cloud is one location, however it is written.
		samePlace := false
		if where {
			pl := place{l.Cloud, l.Region}
			if pl.cloud == "" {
				pl.cloud = v.cloud
			}
			if first, dup := places[pl]; dup {
				samePlace = true
				v.badFrom(li, []string{li + ".cloud", li + ".region"}, "locations[%d] (line %d) and locations[%d] are both %s: each location is another region or cloud",
					first, v.line(fmt.Sprintf("%s[%d]", list, first)), i, describePlace(pl.cloud, pl.region))
			} else {
				places[pl] = i
			}
		}

		nameWritten := v.written[li+".name"]
		switch {
		case !nameWritten && !where:
			// No default name without a cloud or region: reported above.
		case !locationName.MatchString(l.Name) && nameWritten:
			v.bad(li+".name", "expected 1 to 63 letters, digits and the characters - _ . / (the name goes into server metadata and metric labels), got %q", l.Name)
		case !locationName.MatchString(l.Name):
			v.badFrom(li+".name", []string{li + ".cloud", li + ".region"}, "the default name %q, from the location's cloud and region, is not 1 to 63 letters, digits and the characters - _ . / (it goes into server metadata and metric labels): write a name", l.Name)
		default:
			first, dup := names[l.Name]
			switch {
			case !dup:
				names[l.Name] = i
			case samePlace && !nameWritten:
				// The same place under its default name: said once, above.
			case nameWritten:
				v.bad(li+".name", "location name %q is used twice, by locations[%d] (line %d) and locations[%d]: names are unique in a group", l.Name, first, v.line(fmt.Sprintf("%s[%d]", list, first)), i)
			default:
				v.badFrom(li+".name", []string{li + ".cloud", li + ".region"}, "location name %q, the default from the location's cloud and region, is used twice, by locations[%d] (line %d) and locations[%d]: write a name to tell them apart",
					l.Name, first, v.line(fmt.Sprintf("%s[%d]", list, first)), i)
			}
		}

		switch {
		case l.Weight < 0:
			weightsOK = false
			v.bad(li+".weight", "expected a weight of 0 (a standby that gets servers only when another location is down) or more, got %d", l.Weight)
		case l.Weight > maxLocationWeight:
			weightsOK = false
			v.bad(li+".weight", "expected a weight of at most %d (a weight is a share of the group's servers, at most %d of them), got %d", maxLocationWeight, maxCount, l.Weight)
		default:
			sum += l.Weight
		}
		if v.written[li+".availability_zones"] {
			v.distinct(l.AvailabilityZones, li+".availability_zones", "an availability zone name", "availability zone")
		}
	}
	if weightsOK && sum == 0 {
		v.badFrom(list, []string{list}, "every location has weight 0, so none would get servers: give at least one a weight above 0 (weight 0 is a standby that gets servers only when another location is down)")
	}
}

// describePlace names one region of one cloud in a message.
func describePlace(cloud, region string) string {
	c := "cloud " + cloud
	if cloud == "" {
		c = "the default cloud (OS_CLOUD, or the OS_* variables)"
	}
	if region == "" {
		return c + " in its default region"
	}
	return "region " + region + " of " + c
}
