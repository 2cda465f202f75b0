package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servergroups"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/tags"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// tweak edits the "server" object gophercloud builds, for bodies its
// options cannot express.
type tweak struct {
	base servers.CreateOpts
	f    func(map[string]any)
}

func (t tweak) ToServerCreateMap() (map[string]any, error) {
	m, err := t.base.ToServerCreateMap()
	if err == nil {
		t.f(m["server"].(map[string]any))
	}
	return m, err
}

func names(list []servers.Server) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

func listNames(t *testing.T, c *gophercloud.ServiceClient, opts servers.ListOptsBuilder) []string {
	t.Helper()
	pages, err := servers.List(c, opts).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	list, err := servers.ExtractServers(pages)
	if err != nil {
		t.Fatal(err)
	}
	return names(list)
}

// extraQuery adds raw query parameters to a server list.
type extraQuery struct {
	servers.ListOpts
	extra string
}

func (q extraQuery) ToServerListQuery() (string, error) {
	s, err := q.ListOpts.ToServerListQuery()
	if s == "" {
		return "?" + q.extra, err
	}
	return s + "&" + q.extra, err
}

func TestListFilters(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	other := e.sim.AddImage(sim.Image{Name: "other"})
	a := e.opts("a", "team-a", "role-web")
	a.Metadata = map[string]string{"phoenix:group": "web", "phoenix:revision": "r1"}
	e.create(t, a)
	b := e.opts("b", "team-b")
	b.ImageRef = other.ID
	e.create(t, b)
	c := e.opts("c", "team-a", "role-db")
	c.FlavorRef = "2"
	e.sim.StickNextBoots(1)
	e.create(t, c)

	cases := []struct {
		name string
		mv   string
		opts servers.ListOptsBuilder
		want []string
	}{
		{"all, newest first", "2.52", nil, []string{"c", "b", "a"}},
		{"tags", "2.52", servers.ListOpts{Tags: "team-a"}, []string{"c", "a"}},
		{"tags, all must match", "2.52", servers.ListOpts{Tags: "team-a,role-web"}, []string{"a"}},
		{"tags-any", "2.52", servers.ListOpts{TagsAny: "team-b,role-db"}, []string{"c", "b"}},
		{"not-tags", "2.52", servers.ListOpts{NotTags: "team-a,role-web"}, []string{"c", "b"}},
		{"not-tags-any", "2.52", servers.ListOpts{NotTagsAny: "role-web,role-db"}, []string{"b"}},
		{"tags at 2.26", "2.26", servers.ListOpts{Tags: "team-b"}, []string{"b"}},
		{"tags ignored at 2.1: the trap", "2.1", servers.ListOpts{Tags: "team-a"}, []string{"c", "b", "a"}},
		{"tags ignored at 2.25", "2.25", servers.ListOpts{Tags: "team-a"}, []string{"c", "b", "a"}},
		{"name is a regular expression", "2.52", servers.ListOpts{Name: "^[ab]$"}, []string{"b", "a"}},
		{"status", "2.52", servers.ListOpts{Status: "BUILD"}, []string{"c"}},
		{"image", "2.52", servers.ListOpts{Image: other.ID}, []string{"b"}},
		{"flavor", "2.52", servers.ListOpts{Flavor: "2"}, []string{"c"}},
		{"unknown filters ignored", "2.52", extraQuery{servers.ListOpts{}, "color=red&sort_key=display_name"}, []string{"c", "b", "a"}},
		{"unknown status below 2.38 lists nothing", "2.37", servers.ListOpts{Status: "NOPE"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := listNames(t, at(e.compute, tc.mv), tc.opts); !slices.Equal(got, tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := servers.List(e.compute, servers.ListOpts{Status: "NOPE"}).AllPages(context.Background()); !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("unknown status at 2.52: %v, want 400", err)
	}

	pages, _ := servers.List(e.compute, servers.ListOpts{Tags: "role-web"}).AllPages(context.Background())
	list, _ := servers.ExtractServers(pages)
	if len(list) != 1 || list[0].Metadata["phoenix:revision"] != "r1" || list[0].Tags == nil || !slices.Equal(*list[0].Tags, []string{"team-a", "role-web"}) {
		t.Fatalf("listed server %+v", list)
	}
	pages, err := servers.ListSimple(e.compute, servers.ListOpts{Tags: "team-a"}).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	brief, _ := servers.ExtractServers(pages)
	if len(brief) != 2 || brief[0].ID == "" || brief[0].Status != "" || len(brief[0].Links) != 2 {
		t.Fatalf("GET /servers lists %+v: want id, name and links only", brief)
	}
}

func TestPagination(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(0)})
	var created []string
	for i := range 7 {
		created = append(created, e.create(t, e.opts(fmt.Sprint("p", i), "paged")).ID)
	}
	e.create(t, e.opts("elsewhere", "other"))
	ctx := context.Background()

	e.sim.ResetRequests()
	var pageSizes []int
	var seen []string
	err := servers.List(e.compute, servers.ListOpts{Tags: "paged", Limit: 3}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := servers.ExtractServers(p)
		pageSizes = append(pageSizes, len(list))
		for _, s := range list {
			seen = append(seen, s.ID)
		}
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pageSizes, []int{3, 3, 1}) {
		t.Fatalf("page sizes %v, want [3 3 1]", pageSizes)
	}
	want := slices.Clone(created)
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("servers in pages %v, want newest first %v", seen, want)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests for three pages", len(reqs))
	}
	for i, r := range reqs {
		q, _ := url.ParseQuery(r.Query)
		if r.Path != "/compute/v2.1/servers/detail" || q.Get("tags") != "paged" || q.Get("limit") != "3" || (i > 0) != q.Has("marker") {
			t.Errorf("request %d: %s?%s", i, r.Path, r.Query)
		}
	}

	// A full last page still carries a next link, as in Nova: one more
	// request finds the end.
	e.sim.ResetRequests()
	pages := 0
	err = servers.List(e.compute, servers.ListOpts{Tags: "paged", Limit: 7}).EachPage(ctx, func(context.Context, pagination.Page) (bool, error) {
		pages++
		return true, nil
	})
	if err != nil || pages != 1 || countRequests(e.sim, "GET", "/compute/v2.1/servers/detail") != 2 {
		t.Fatalf("7 servers at 7 a page: %d pages, %d requests, %v", pages, countRequests(e.sim, "GET", "/compute/v2.1/servers/detail"), err)
	}

	// A marker that was deleted since is still a marker; an unknown one is not.
	if err := servers.Delete(ctx, e.compute, created[4]).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete", func() bool { _, ok := e.sim.Server(created[4]); return !ok })
	got := listNames(t, e.compute, servers.ListOpts{Tags: "paged", Marker: created[4]})
	if !slices.Equal(got, []string{"p3", "p2", "p1", "p0"}) {
		t.Fatalf("after a deleted marker: %v", got)
	}
	_, err = servers.List(e.compute, servers.ListOpts{Marker: "no-such-server"}).AllPages(ctx)
	if !gophercloud.ResponseCodeIs(err, 400) || !strings.Contains(errorBody(t, err), "marker [no-such-server] not found") {
		t.Fatalf("unknown marker: %v", err)
	}
}

func TestPagesCappedAtMaxLimit(t *testing.T) {
	e := start(t, sim.Options{NovaMaxLimit: 4, BootTime: sim.Fixed(0)})
	for i := range 10 {
		e.create(t, e.opts(fmt.Sprint("s", i)))
	}
	for _, limit := range []int{0, 100} {
		e.sim.ResetRequests()
		if got := listNames(t, e.compute, servers.ListOpts{Limit: limit}); len(got) != 10 {
			t.Fatalf("limit %d: listed %d", limit, len(got))
		}
		if n := countRequests(e.sim, "GET", "/compute/v2.1/servers/detail"); n != 3 {
			t.Fatalf("limit %d: %d requests, want 3 pages of at most 4", limit, n)
		}
	}
}

func TestCreateValidation(t *testing.T) {
	e := start(t, sim.Options{})
	inactive := e.sim.AddImage(sim.Image{Name: "old"})
	if err := e.sim.SetImageStatus(inactive.ID, "deactivated"); err != nil {
		t.Fatal(err)
	}
	e.sim.AddKeypair("ops")
	with := func(o servers.CreateOpts, f func(*servers.CreateOpts)) servers.CreateOpts {
		f(&o)
		return o
	}
	set := func(k string, v any) servers.CreateOptsBuilder {
		return tweak{e.opts("x"), func(m map[string]any) { m[k] = v }}
	}
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	bigMeta := map[string]string{}
	for i := range 129 {
		bigMeta[fmt.Sprint("k", i)] = "v"
	}
	missing := uuid.NewString()
	cases := []struct {
		name   string
		mv     string
		opts   servers.CreateOptsBuilder
		status int
		want   string
	}{
		{"tags before 2.52", "2.51", e.opts("x", "t"), 400, "Additional properties are not allowed ('tags' was unexpected)"},
		{"unknown key", "2.52", set("color", "red"), 400, "('color' was unexpected)"},
		{"description before 2.19", "2.18", set("description", "d"), 400, "('description' was unexpected)"},
		{"no name", "2.52", tweak{e.opts("x"), func(m map[string]any) { delete(m, "name") }}, 400, "'name' is a required property"},
		{"blank name", "2.52", set("name", " x"), 400, "is not a 'name'"},
		{"no networks from 2.37", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Networks = nil }), 400, "'networks' is a required property"},
		{"unknown network", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Networks = []servers.Network{{UUID: missing}} }), 400, "Network " + missing + " could not be found."},
		{"network not a uuid", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Networks = []servers.Network{{UUID: "private"}} }), 400, "is not a 'uuid'"},
		{"unknown image", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.ImageRef = missing }), 400, "Can not find requested image"},
		{"image not a uuid", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.ImageRef = "nope" }), 400, "Invalid input for field/attribute imageRef"},
		{"inactive image", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.ImageRef = inactive.ID }), 400, "Image " + inactive.ID + " is not active."},
		{"unknown flavor", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.FlavorRef = "99" }), 400, "Flavor 99 could not be found."},
		{"51 tags", "2.52", e.opts("x", many(51, func(i int) string { return fmt.Sprint("t", i) })...), 400, "is too long"},
		{"tag of 61 characters", "2.52", e.opts("x", strings.Repeat("t", 61)), 400, "is too long"},
		{"tag with a slash", "2.52", e.opts("x", "a/b"), 400, "does not match '^[^,/]*$'"},
		{"tag with a comma", "2.52", e.opts("x", "a,b"), 400, "does not match '^[^,/]*$'"},
		{"metadata key with a slash", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Metadata = map[string]string{"a/b": "c"} }), 400, "('a/b' was unexpected)"},
		{"metadata key too long", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Metadata = map[string]string{strings.Repeat("k", 256): "c"} }), 400, "was unexpected"},
		{"metadata value too long", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Metadata = map[string]string{"k": strings.Repeat("v", 256)} }), 400, "is too long"},
		{"129 metadata items", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Metadata = bigMeta }), 403, "Maximum number of metadata items exceeds 128"},
		{"user data not base64", "2.52", set("user_data", "not base64!"), 400, "is not a 'base64'"},
		{"unknown key pair", "2.52", set("key_name", "missing"), 400, "Invalid key_name provided."},
		{"unknown security group", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.SecurityGroups = []string{"web"} }), 400, "Security group web not found."},
		{"two servers at once", "2.52", with(e.opts("x"), func(o *servers.CreateOpts) { o.Max = 2 }), 400, "one server per request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := servers.Create(context.Background(), at(e.compute, tc.mv), tc.opts, nil).Extract()
			if !gophercloud.ResponseCodeIs(err, tc.status) || !strings.Contains(errorBody(t, err), tc.want) {
				t.Fatalf("err = %v, want %d saying %q", err, tc.status, tc.want)
			}
			kind := map[int]string{400: "badRequest", 403: "forbidden"}[tc.status]
			if !strings.HasPrefix(errorBody(t, err), `{"`+kind+`":{"code":`+fmt.Sprint(tc.status)) {
				t.Fatalf("body %s is not Nova's", errorBody(t, err))
			}
		})
	}
	_, err := servers.Create(context.Background(), e.compute, e.opts("x"), servers.SchedulerHintOpts{Group: missing}).Extract()
	if !gophercloud.ResponseCodeIs(err, 400) || !strings.Contains(errorBody(t, err), "Instance group "+missing+" could not be found.") {
		t.Errorf("unknown server group: %v", err)
	}
	if n := len(e.sim.Servers()); n != 0 {
		t.Fatalf("%d servers exist after only refused creates", n)
	}

	// What passes: networks may be left out below 2.37, "auto" and "none"
	// from it; tags from 2.52; a known key pair and security group.
	e.sim.AddSecurityGroup("web")
	ok := []struct {
		mv   string
		opts servers.CreateOptsBuilder
		net  string
	}{
		{"2.36", with(e.opts("old"), func(o *servers.CreateOpts) { o.Networks = nil }), "private"},
		{"2.52", with(e.opts("auto"), func(o *servers.CreateOpts) { o.Networks = "auto" }), "private"},
		{"2.52", with(e.opts("none"), func(o *servers.CreateOpts) { o.Networks = "none" }), ""},
		{"2.52", tweak{with(e.opts("full", "t1", "t2"), func(o *servers.CreateOpts) {
			o.SecurityGroups, o.UserData, o.AvailabilityZone = []string{"web"}, []byte("#cloud-config\n"), "zone-b"
		}), func(m map[string]any) { m["key_name"] = "ops" }}, "private"},
	}
	for _, tc := range ok {
		srv, err := servers.Create(context.Background(), at(e.compute, tc.mv), tc.opts, nil).Extract()
		if err != nil {
			t.Fatalf("create at %s: %v", tc.mv, err)
		}
		v, _ := e.sim.Server(srv.ID)
		if v.Network != tc.net || (tc.net != "") != (v.Address != "") {
			t.Errorf("server %s on network %q with address %q, want %q", v.Name, v.Network, v.Address, tc.net)
		}
		if v.Name == "full" && (v.KeyName != "ops" || v.AvailabilityZone != "zone-b" || !slices.Equal(v.Tags, []string{"t1", "t2"})) {
			t.Errorf("full create recorded as %+v", v)
		}
	}
}

func TestServerJSON(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), HealthDelay: sim.Fixed(time.Hour)})
	srv := e.create(t, e.opts("web-1", "g"))
	group := e.sim.AddServerGroup("g", "anti-affinity")
	inGroup, err := servers.Create(context.Background(), e.compute, e.opts("web-2"), servers.SchedulerHintOpts{Group: group}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	keys := func(mv string, id string) map[string]json.RawMessage {
		status, _, body := e.raw(t, "GET", "/compute/v2.1/servers/"+id, mv, nil)
		var doc struct{ Server map[string]json.RawMessage }
		if status != 200 || json.Unmarshal(body, &doc) != nil {
			t.Fatalf("GET server at %s: %d %s", mv, status, body)
		}
		return doc.Server
	}
	common := []string{"id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor",
		"created", "updated", "addresses", "accessIPv4", "accessIPv6", "links", "key_name", "security_groups",
		"OS-EXT-AZ:availability_zone", "OS-EXT-STS:task_state", "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state",
		"OS-SRV-USG:launched_at", "OS-SRV-USG:terminated_at", "os-extended-volumes:volumes_attached",
		"config_drive", "progress", "OS-DCF:diskConfig"}
	cases := []struct {
		mv          string
		has, hasNot []string
		flavorKey   string
	}{
		{"2.1", nil, []string{"locked", "description", "tags", "server_groups", "pinned_availability_zone", "fault"}, "id"},
		{"2.47", []string{"locked", "description", "tags"}, []string{"server_groups", "trusted_image_certificates"}, "original_name"},
		{"2.96", []string{"locked", "description", "tags", "trusted_image_certificates", "server_groups", "locked_reason",
			"OS-EXT-SRV-ATTR:hostname", "pinned_availability_zone"}, []string{"fault", "scheduler_hints"}, "original_name"},
	}
	for _, tc := range cases {
		doc := keys(tc.mv, srv.ID)
		for _, k := range append(slices.Clone(common), tc.has...) {
			if _, ok := doc[k]; !ok {
				t.Errorf("at %s the server lacks %q", tc.mv, k)
			}
		}
		for _, k := range tc.hasNot {
			if _, ok := doc[k]; ok {
				t.Errorf("at %s the server has %q", tc.mv, k)
			}
		}
		var flavor map[string]any
		_ = json.Unmarshal(doc["flavor"], &flavor)
		if _, ok := flavor[tc.flavorKey]; !ok {
			t.Errorf("at %s the flavor is %v, want a %q", tc.mv, flavor, tc.flavorKey)
		}
	}
	if g := keys("2.96", inGroup.ID)["server_groups"]; string(g) != `["`+group+`"]` {
		t.Errorf("server_groups %s, want [%s]", g, group)
	}

	// gophercloud decodes every field, times included.
	got, err := servers.Get(context.Background(), at(e.compute, "2.96"), srv.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := e.sim.Server(srv.ID)
	addr := got.Addresses["private"].([]any)[0].(map[string]any)
	switch {
	case got.Status != "ACTIVE" || got.VmState != "active" || got.TaskState != "" || got.PowerState != servers.RUNNING:
		t.Errorf("state %s/%s/%q/%d", got.Status, got.VmState, got.TaskState, got.PowerState)
	case got.Created.IsZero() || got.Updated.IsZero() || got.LaunchedAt.IsZero() || !got.TerminatedAt.IsZero():
		t.Errorf("times created %v updated %v launched %v terminated %v", got.Created, got.Updated, got.LaunchedAt, got.TerminatedAt)
	case got.Created.Sub(v.Created).Abs() > time.Second || got.LaunchedAt.Sub(v.ActiveAt).Abs() > time.Millisecond:
		t.Errorf("created %v launched %v, sim says %v %v", got.Created, got.LaunchedAt, v.Created, v.ActiveAt)
	case got.Flavor["original_name"] != "m1.tiny" || got.Flavor["vcpus"] != 1.0 || got.Flavor["ram"] != 512.0:
		t.Errorf("flavor %v", got.Flavor)
	case got.Image["id"] != e.img.ID || got.TenantID == "" || got.UserID == "" || got.AvailabilityZone != "nova":
		t.Errorf("image %v tenant %q user %q zone %q", got.Image, got.TenantID, got.UserID, got.AvailabilityZone)
	case addr["addr"] != v.Address || addr["version"] != 4.0 || addr["OS-EXT-IPS:type"] != "fixed" || !strings.HasPrefix(addr["OS-EXT-IPS-MAC:mac_addr"].(string), "fa:16:3e:"):
		t.Errorf("address %v, sim says %s", addr, v.Address)
	case got.Locked == nil || *got.Locked || got.Tags == nil || (*got.Tags)[0] != "g" || got.ServerGroups == nil:
		t.Errorf("locked %v tags %v groups %v", got.Locked, got.Tags, got.ServerGroups)
	case len(got.SecurityGroups) != 1 || got.SecurityGroups[0]["name"] != "default" || got.AttachedVolumes == nil || got.DiskConfig != servers.Manual:
		t.Errorf("security groups %v volumes %v disk %s", got.SecurityGroups, got.AttachedVolumes, got.DiskConfig)
	case got.Hostname == nil || *got.Hostname != "web-1" || len(got.Links) != 2 || got.ConfigDrive || got.AccessIPv4 != "":
		t.Errorf("hostname %v links %v", got.Hostname, got.Links)
	}
	if _, err := servers.Get(context.Background(), e.compute, "nope").Extract(); !gophercloud.ResponseCodeIs(err, 404) ||
		errorBody(t, err) != `{"itemNotFound":{"code":404,"message":"Instance nope could not be found."}}`+"\n" {
		t.Errorf("missing server: %v", err)
	}
}

func TestBootOutcomes(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(20 * time.Millisecond), HealthDelay: sim.Fixed(time.Hour)})
	e.sim.FailNextBoots(1)
	e.sim.StickNextBoots(1)
	stuck := e.create(t, e.opts("stuck"))   // the stick applies first
	failed := e.create(t, e.opts("failed")) // then the failure
	fine := e.create(t, e.opts("fine"))
	bad := e.sim.AddImage(sim.Image{Name: "bad", BootFails: true})
	fromBad := e.opts("from-bad")
	fromBad.ImageRef = bad.ID
	badSrv := e.create(t, fromBad)

	got, _ := servers.Get(context.Background(), e.compute, fine.ID).Extract()
	if got.Status != "BUILD" || got.VmState != "building" || got.TaskState != "spawning" || len(got.Addresses) != 0 || !got.LaunchedAt.IsZero() {
		t.Fatalf("right after create: %s/%s/%s addresses %v; want BUILD, spawning, no addresses yet", got.Status, got.VmState, got.TaskState, got.Addresses)
	}
	waitFor(t, "boots", func() bool {
		a, _ := e.sim.Server(fine.ID)
		b, _ := e.sim.Server(badSrv.ID)
		c, _ := e.sim.Server(failed.ID)
		return a.Status == "ACTIVE" && b.Status == "ERROR" && c.Status == "ERROR"
	})
	time.Sleep(50 * time.Millisecond)
	for id, want := range map[string]string{stuck.ID: "BUILD", failed.ID: "ERROR", fine.ID: "ACTIVE", badSrv.ID: "ERROR"} {
		got, err := servers.Get(context.Background(), e.compute, id).Extract()
		if err != nil || got.Status != want {
			t.Errorf("server %s: %v %v, want %s", id, got.Status, err, want)
			continue
		}
		if want == "ERROR" && (got.Fault.Code != 500 || got.Fault.Message != "No valid host was found. There are not enough hosts available." ||
			got.Fault.Created.IsZero() || got.VmState != "error") {
			t.Errorf("server %s in ERROR: fault %+v vm_state %s", id, got.Fault, got.VmState)
		}
		if want != "ERROR" && got.Fault.Message != "" {
			t.Errorf("server %s in %s has a fault", id, want)
		}
	}
	if v, _ := e.sim.Server(fine.ID); v.ActiveAt.IsZero() || v.BootTime != 20*time.Millisecond || v.ActiveAt.Sub(v.Created) < 20*time.Millisecond {
		t.Errorf("fine server: %+v", v)
	}

	// With no boot time a server is ACTIVE by its first GET.
	z := start(t, sim.Options{BootTime: sim.Fixed(0)})
	srv := z.create(t, z.opts("instant"))
	if got, _ := servers.Get(context.Background(), z.compute, srv.ID).Extract(); got.Status != "ACTIVE" {
		t.Fatalf("zero boot time: %s", got.Status)
	}
}

func TestDelete(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(100 * time.Millisecond)})
	srv := e.create(t, e.opts("doomed", "d"))
	ctx := context.Background()
	if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	got, err := servers.Get(ctx, e.compute, srv.ID).Extract()
	if err != nil || got.Status != "ACTIVE" || got.TaskState != "deleting" {
		t.Fatalf("right after delete: %v %+v; want ACTIVE, task state deleting", err, got)
	}
	if names := listNames(t, e.compute, servers.ListOpts{Tags: "d"}); len(names) != 1 {
		t.Fatalf("a server being deleted is not listed: %v", names)
	}
	if v, ok := e.sim.Server(srv.ID); !ok || !v.Deleting || v.Healthy || v.TaskState != "deleting" {
		t.Fatalf("sim view while deleting: %+v", v)
	}
	if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatalf("a second delete while deleting: %v", err)
	}
	waitFor(t, "gone", func() bool {
		_, err := servers.Get(ctx, e.compute, srv.ID).Extract()
		return gophercloud.ResponseCodeIs(err, 404)
	})
	if _, ok := e.sim.Server(srv.ID); ok || len(e.sim.Servers()) != 0 {
		t.Fatal("a deleted server is still in the sim's view")
	}
	if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("deleting a gone server: %v, want 404", err)
	}
}

func TestQuota(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(150 * time.Millisecond)})
	ctx := context.Background()
	e.sim.SetQuota(sim.Quota{Instances: 2})
	first := e.create(t, e.opts("one"))
	e.create(t, e.opts("two"))
	_, err := servers.Create(ctx, e.compute, e.opts("three"), nil).Extract()
	want := `{"forbidden":{"code":403,"message":"Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"}}` + "\n"
	if !gophercloud.ResponseCodeIs(err, 403) || errorBody(t, err) != want {
		t.Fatalf("over quota: %v", err)
	}
	lim, err := limits.Get(ctx, e.compute, nil).Extract()
	if err != nil || lim.Absolute.MaxTotalInstances != 2 || lim.Absolute.TotalInstancesUsed != 2 {
		t.Fatalf("limits %+v, %v", lim, err)
	}
	// A server being deleted still counts until it is gone.
	if err := servers.Delete(ctx, e.compute, first.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Create(ctx, e.compute, e.opts("three"), nil).Extract(); !gophercloud.ResponseCodeIs(err, 403) {
		t.Fatalf("while the delete is in progress: %v, want 403", err)
	}
	waitFor(t, "the delete", func() bool { return len(e.sim.Servers()) == 1 })
	e.create(t, e.opts("three"))
	e.sim.SetQuota(sim.Quota{Instances: -1})
	e.create(t, e.opts("four"))
	if lim, _ := limits.Get(ctx, e.compute, nil).Extract(); lim.Absolute.MaxTotalInstances != -1 || lim.Absolute.TotalInstancesUsed != 3 {
		t.Fatalf("unlimited: %+v", lim.Absolute)
	}
}

func TestMetadata(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), DeleteTime: sim.Fixed(time.Hour)})
	ctx := context.Background()
	o := e.opts("md")
	o.Metadata = map[string]string{"a": "1", "b": "2"}
	srv := e.create(t, o)

	merged, err := servers.UpdateMetadata(ctx, e.compute, srv.ID, servers.MetadataOpts{"b": "3", "c": "4"}).Extract()
	if err != nil || !maps.Equal(merged, map[string]string{"a": "1", "b": "3", "c": "4"}) {
		t.Fatalf("merge (POST): %v, %v", merged, err)
	}
	replaced, err := servers.ResetMetadata(ctx, e.compute, srv.ID, servers.MetadataOpts{"z": "9"}).Extract()
	if err != nil || !maps.Equal(replaced, map[string]string{"z": "9"}) {
		t.Fatalf("replace (PUT): %v, %v", replaced, err)
	}
	if _, err := servers.CreateMetadatum(ctx, e.compute, srv.ID, servers.MetadatumOpts{"k": "v"}).Extract(); err != nil {
		t.Fatal(err)
	}
	if got, err := servers.Metadatum(ctx, e.compute, srv.ID, "k").Extract(); err != nil || got["k"] != "v" {
		t.Fatalf("one key: %v, %v", got, err)
	}
	if err := servers.DeleteMetadatum(ctx, e.compute, srv.ID, "k").ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Metadatum(ctx, e.compute, srv.ID, "k").Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("deleted key: %v, want 404", err)
	}
	if got, _ := servers.Metadata(ctx, e.compute, srv.ID).Extract(); !maps.Equal(got, map[string]string{"z": "9"}) {
		t.Fatalf("metadata %v", got)
	}
	if v, _ := e.sim.Server(srv.ID); !maps.Equal(v.Metadata, map[string]string{"z": "9"}) {
		t.Fatalf("sim view %v", v.Metadata)
	}
	if status, _, body := e.raw(t, "PUT", "/compute/v2.1/servers/"+srv.ID+"/metadata/k", "2.52", map[string]any{"meta": map[string]string{"other": "v"}}); status != 400 || !strings.Contains(string(body), "Request body and URI mismatch") {
		t.Fatalf("mismatched key: %d %s", status, body)
	}
	big := servers.MetadataOpts{}
	for i := range 128 {
		big[fmt.Sprint("k", i)] = "v"
	}
	if _, err := servers.UpdateMetadata(ctx, e.compute, srv.ID, big).Extract(); !gophercloud.ResponseCodeIs(err, 403) ||
		!strings.Contains(errorBody(t, err), "Maximum number of metadata items exceeds 128") {
		t.Fatalf("merging past 128 items: %v", err)
	}
	if _, err := servers.UpdateMetadata(ctx, e.compute, srv.ID, servers.MetadataOpts{"bad/key": "v"}).Extract(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Fatalf("bad key: %v", err)
	}

	// Nova refuses metadata changes unless the server is active with no
	// task in progress.
	e.sim.StickNextBoots(1)
	building := e.create(t, e.opts("building"))
	e.sim.FailNextBoots(1)
	broken := e.create(t, e.opts("broken"))
	if err := servers.Delete(ctx, e.compute, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		building.ID: "while it is in vm_state building",
		broken.ID:   "while it is in vm_state error",
		srv.ID:      "while it is in task_state deleting",
	} {
		_, err := servers.UpdateMetadata(ctx, e.compute, id, servers.MetadataOpts{"phase": "x"}).Extract()
		if !gophercloud.ResponseCodeIs(err, 409) || !strings.Contains(errorBody(t, err), "Cannot 'update metadata' instance "+id+" "+want) {
			t.Errorf("metadata on %s: %v", id, err)
		}
	}
	if got, err := servers.Metadata(ctx, e.compute, building.ID).Extract(); err != nil || len(got) != 0 {
		t.Errorf("reading metadata of a building server: %v %v", got, err)
	}
}

func TestServerTags(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	ctx := context.Background()
	srv := e.create(t, e.opts("tagged", "a"))
	c := at(e.compute, "2.26")
	status, hdr, _ := e.raw(t, "PUT", "/compute/v2.1/servers/"+srv.ID+"/tags/b", "2.26", nil)
	if status != 201 || !strings.HasSuffix(hdr.Get("Location"), "/servers/"+srv.ID+"/tags/b") {
		t.Fatalf("adding a tag: %d %v", status, hdr)
	}
	if status, _, _ := e.raw(t, "PUT", "/compute/v2.1/servers/"+srv.ID+"/tags/b", "2.26", nil); status != 204 {
		t.Fatalf("adding it again: %d, want 204", status)
	}
	if err := tags.Add(ctx, c, srv.ID, "c").ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if ok, err := tags.Check(ctx, c, srv.ID, "b").Extract(); err != nil || !ok {
		t.Fatalf("check b: %v %v", ok, err)
	}
	if ok, _ := tags.Check(ctx, c, srv.ID, "zzz").Extract(); ok {
		t.Fatal("check of a missing tag succeeded")
	}
	if err := tags.Delete(ctx, c, srv.ID, "a").ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got, err := tags.List(ctx, c, srv.ID).Extract(); err != nil || !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("tags %v, %v", got, err)
	}
	if got, err := tags.ReplaceAll(ctx, c, srv.ID, tags.ReplaceAllOpts{Tags: []string{"x", "y"}}).Extract(); err != nil || !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("replace: %v, %v", got, err)
	}
	if status, _, body := e.raw(t, "PUT", "/compute/v2.1/servers/"+srv.ID+"/tags/a,b", "2.26", nil); status != 400 || !strings.Contains(string(body), "is invalid") {
		t.Fatalf("a tag with a comma: %d %s", status, body)
	}
	if v, _ := e.sim.Server(srv.ID); !slices.Equal(v.Tags, []string{"x", "y"}) {
		t.Fatalf("sim view %v", v.Tags)
	}
	if err := tags.DeleteAll(ctx, c, srv.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if got, _ := tags.List(ctx, c, srv.ID).Extract(); len(got) != 0 {
		t.Fatalf("after delete all: %v", got)
	}
	if _, err := tags.List(ctx, at(e.compute, "2.25"), srv.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("tags API at 2.25: %v, want 404", err)
	}
	e.sim.StickNextBoots(1)
	building := e.create(t, e.opts("building"))
	if err := tags.Add(ctx, c, building.ID, "t").ExtractErr(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Fatalf("tagging a building server: %v, want 409", err)
	}
}

func TestFlavorsKeypairsServerGroups(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	ctx := context.Background()
	extra := e.sim.AddFlavor(sim.Flavor{Name: "c1.huge", VCPUs: 16, RAM: 65536, Disk: 200})
	pages, err := flavors.ListDetail(e.compute, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := flavors.ExtractFlavors(pages)
	if err != nil || len(list) != 5 {
		t.Fatalf("flavors %+v, %v", list, err)
	}
	want := map[string]flavors.Flavor{
		"1": {ID: "1", Name: "m1.tiny", VCPUs: 1, RAM: 512, Disk: 1},
		"2": {ID: "2", Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20},
		"3": {ID: "3", Name: "m1.medium", VCPUs: 2, RAM: 4096, Disk: 40},
		"4": {ID: "4", Name: "m1.large", VCPUs: 4, RAM: 8192, Disk: 80},
	}
	for _, f := range list {
		if w, ok := want[f.ID]; ok && (f.Name != w.Name || f.VCPUs != w.VCPUs || f.RAM != w.RAM || f.Disk != w.Disk) {
			t.Errorf("flavor %+v, want %+v", f, w)
		}
	}
	if f, err := flavors.Get(ctx, e.compute, extra.ID).Extract(); err != nil || f.Name != "c1.huge" || f.VCPUs != 16 {
		t.Fatalf("get flavor: %+v, %v", f, err)
	}
	if _, err := flavors.Get(ctx, e.compute, "nope").Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("missing flavor: %v", err)
	}

	e.sim.AddKeypair("ops")
	kpages, err := keypairs.List(e.compute, nil).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kps, _ := keypairs.ExtractKeyPairs(kpages); len(kps) != 1 || kps[0].Name != "ops" {
		t.Fatalf("key pairs %+v", kps)
	}

	sg, err := servergroups.Create(ctx, at(e.compute, "2.64"), servergroups.CreateOpts{Name: "web", Policy: "anti-affinity"}).Extract()
	if err != nil || sg.Policy == nil || *sg.Policy != "anti-affinity" {
		t.Fatalf("create server group: %+v, %v", sg, err)
	}
	srv, err := servers.Create(ctx, e.compute, e.opts("member"), servers.SchedulerHintOpts{Group: sg.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, err := servergroups.Get(ctx, e.compute, sg.ID).Extract()
	if err != nil || !slices.Equal(got.Members, []string{srv.ID}) || !slices.Equal(got.Policies, []string{"anti-affinity"}) {
		t.Fatalf("server group %+v, %v", got, err)
	}
	gpages, _ := servergroups.List(e.compute, nil).AllPages(ctx)
	if all, _ := servergroups.ExtractServerGroups(gpages); len(all) != 1 {
		t.Fatalf("server groups %+v", all)
	}
}

func TestCreateImageAction(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0), SnapshotTime: sim.Fixed(100 * time.Millisecond)})
	ctx := context.Background()
	srv := e.create(t, e.opts("snap-me"))
	c := at(e.compute, "2.45")
	id, err := servers.CreateImage(ctx, c, srv.ID, servers.CreateImageOpts{Name: "snap", Metadata: map[string]string{"phoenix:group": "web"}}).ExtractImageID()
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Get(ctx, e.image, id).Extract()
	if err != nil || img.Status != images.ImageStatusQueued || img.Properties["phoenix:group"] != "web" || img.Properties["instance_uuid"] != srv.ID {
		t.Fatalf("snapshot right after: %+v, %v", img, err)
	}
	if got, _ := servers.Get(ctx, e.compute, srv.ID).Extract(); got.TaskState != "image_snapshot" {
		t.Fatalf("task state %q during the snapshot", got.TaskState)
	}
	if _, err := servers.CreateImage(ctx, c, srv.ID, servers.CreateImageOpts{Name: "again"}).ExtractImageID(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Fatalf("a second snapshot during the first: %v, want 409", err)
	}
	waitFor(t, "the snapshot", func() bool {
		img, err := images.Get(ctx, e.image, id).Extract()
		return err == nil && img.Status == images.ImageStatusActive && img.SizeBytes > 0
	})
	if got, _ := servers.Get(ctx, e.compute, srv.ID).Extract(); got.TaskState != "" {
		t.Fatalf("task state %q after the snapshot", got.TaskState)
	}
	if _, err := servers.CreateImage(ctx, c, "nope", servers.CreateImageOpts{Name: "x"}).ExtractImageID(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("snapshot of a missing server: %v", err)
	}
	// Below 2.45 the image's URL comes in Location.
	status, hdr, _ := e.raw(t, "POST", "/compute/v2.1/servers/"+srv.ID+"/action", "2.1", map[string]any{"createImage": map[string]any{"name": "old"}})
	if status != http.StatusAccepted || !strings.Contains(hdr.Get("Location"), "/image/v2/images/") {
		t.Fatalf("createImage at 2.1: %d %v", status, hdr)
	}
}

func TestUpdateServer(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	srv := e.create(t, e.opts("before"))
	host := "renamed-host"
	got, err := servers.Update(context.Background(), at(e.compute, "2.90"), srv.ID, servers.UpdateOpts{Name: "after", Hostname: &host}).Extract()
	if err != nil || got.Name != "after" || got.Hostname == nil || *got.Hostname != host {
		t.Fatalf("update: %+v, %v", got, err)
	}
	if _, err := servers.Update(context.Background(), e.compute, srv.ID, servers.UpdateOpts{Hostname: &host}).Extract(); !gophercloud.ResponseCodeIs(err, 400) {
		t.Fatalf("hostname before 2.90: %v, want 400", err)
	}
	if v, _ := e.sim.Server(srv.ID); v.Name != "after" {
		t.Fatalf("sim view %q", v.Name)
	}
}

// TestCreatedBy: a server keeps the User-Agent of its create, so that a
// test can tell which of several clients (Phoenix replicas) created it.
func TestCreatedBy(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	e.provider.UserAgent.Prepend("phoenix-replica/r-2")
	srv := e.create(t, e.opts("made"))
	v, ok := e.sim.Server(srv.ID)
	if !ok || !strings.HasPrefix(v.CreatedBy, "phoenix-replica/r-2 ") {
		t.Fatalf("created by %q (found %v), want the create's User-Agent", v.CreatedBy, ok)
	}
}
