package sim_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner/openstack/sim"
)

// propertyQuery adds a custom-property filter, which images.ListOpts
// cannot express.
type propertyQuery struct {
	images.ListOpts
	extra string
}

func (q propertyQuery) ToImageListQuery() (string, error) {
	s, err := q.ListOpts.ToImageListQuery()
	if s == "" {
		return "?" + q.extra, err
	}
	return s + "&" + q.extra, err
}

func imageNames(t *testing.T, c *gophercloud.ServiceClient, opts images.ListOptsBuilder) []string {
	t.Helper()
	pages, err := images.List(c, opts).AllPages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	list, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range list {
		out = append(out, img.Name)
	}
	return out
}

func TestGlanceFilters(t *testing.T) {
	e := start(t, sim.Options{})
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	add := func(name string, minute int, distro string, tags ...string) {
		e.sim.AddImage(sim.Image{Name: name, Created: base.Add(time.Duration(minute) * time.Minute),
			Properties: map[string]string{"os_distro": distro}, Tags: tags})
	}
	add("gold-1", 1, "ubuntu", "gold")
	add("gold-2", 2, "debian", "gold", "cis")
	add("gold-3", 3, "ubuntu", "gold", "cis")
	add("silver", 4, "ubuntu")
	queued := e.sim.AddImage(sim.Image{Name: "gold-4", Status: "queued", Created: base.Add(5 * time.Minute)})

	cases := []struct {
		name string
		opts images.ListOptsBuilder
		want []string
	}{
		{"newest first", images.ListOpts{Tags: []string{"gold"}}, []string{"gold-3", "gold-2", "gold-1"}},
		{"by name", images.ListOpts{Name: "gold-2"}, []string{"gold-2"}},
		{"name in", propertyQuery{images.ListOpts{}, "name=in:gold-1,silver"}, []string{"silver", "gold-1"}},
		{"every tag must match", images.ListOpts{Tags: []string{"gold", "cis"}}, []string{"gold-3", "gold-2"}},
		{"by property", propertyQuery{images.ListOpts{Tags: []string{"gold"}}, "os_distro=ubuntu"}, []string{"gold-3", "gold-1"}},
		{"unknown property", propertyQuery{images.ListOpts{}, "os_distro=arch"}, nil},
		{"by status", images.ListOpts{Status: images.ImageStatusQueued}, []string{"gold-4"}},
		{"by visibility", images.ListOpts{Visibility: images.ImageVisibilityPublic, Name: "silver"}, []string{"silver"}},
		{"private: none", images.ListOpts{Visibility: images.ImageVisibilityPrivate}, nil},
		{"sort by name ascending", images.ListOpts{Sort: "name:asc", Tags: []string{"gold"}}, []string{"gold-1", "gold-2", "gold-3"}},
		{"classic sort keys", images.ListOpts{SortKey: "name", SortDir: "asc", Tags: []string{"cis"}}, []string{"gold-2", "gold-3"}},
		// "base", the image start() adds, was created just now.
		{"oldest first", images.ListOpts{Sort: "created_at:asc", Status: images.ImageStatusActive}, []string{"gold-1", "gold-2", "gold-3", "silver", "base"}},
		{"created after", propertyQuery{images.ListOpts{Status: images.ImageStatusActive}, "created_at=gte:" + url.QueryEscape(base.Add(3*time.Minute).UTC().Format(time.RFC3339))}, []string{"base", "silver", "gold-3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := imageNames(t, e.image, tc.opts); !slices.Equal(got, tc.want) {
				t.Fatalf("listed %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := images.List(e.image, images.ListOpts{Sort: "color:asc"}).AllPages(context.Background()); !gophercloud.ResponseCodeIs(err, 400) {
		t.Errorf("unknown sort key: %v, want 400", err)
	}

	img, err := images.Get(context.Background(), e.image, queued.ID).Extract()
	if err != nil || img.Status != images.ImageStatusQueued || img.SizeBytes != 0 {
		t.Fatalf("queued image %+v, %v", img, err)
	}
	pages, _ := images.List(e.image, images.ListOpts{Name: "gold-3"}).AllPages(context.Background())
	list, _ := images.ExtractImages(pages)
	got := list[0]
	switch {
	case got.Properties["os_distro"] != "ubuntu":
		t.Errorf("custom property not at the top level: %v", got.Properties)
	case !got.CreatedAt.Equal(base.Add(3*time.Minute)) || got.UpdatedAt.IsZero():
		t.Errorf("created %v, want %v", got.CreatedAt, base.Add(3*time.Minute))
	case got.ContainerFormat != "bare" || got.DiskFormat != "qcow2" || got.SizeBytes == 0 || got.Checksum == "" || got.Owner == "":
		t.Errorf("image %+v", got)
	case got.Visibility != images.ImageVisibilityPublic || got.Status != images.ImageStatusActive || !slices.Equal(got.Tags, []string{"gold", "cis"}):
		t.Errorf("image %+v", got)
	}
	if _, err := images.Get(context.Background(), e.image, "nope").Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("missing image: %v", err)
	}
}

func TestGlancePages(t *testing.T) {
	e := start(t, sim.Options{})
	base := time.Now().Add(-time.Hour)
	for i := range 7 {
		e.sim.AddImage(sim.Image{Name: "paged", Created: base.Add(time.Duration(i) * time.Minute),
			Properties: map[string]string{"n": fmt.Sprint(i)}})
	}
	e.sim.ResetRequests()
	var got []string
	pages := 0
	err := images.List(e.image, images.ListOpts{Name: "paged", Limit: 3}).EachPage(context.Background(), func(_ context.Context, p pagination.Page) (bool, error) {
		pages++
		list, err := images.ExtractImages(p)
		for _, img := range list {
			got = append(got, img.Properties["n"].(string))
		}
		return true, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 || strings.Join(got, "") != "6543210" {
		t.Fatalf("%d pages holding %v, want 3 pages newest first", pages, got)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests for 3 pages", len(reqs))
	}
	for i, r := range reqs {
		q, _ := url.ParseQuery(r.Query)
		if r.Path != "/image/v2/images" || q.Get("name") != "paged" || q.Get("limit") != "3" || (i > 0) != q.Has("marker") {
			t.Errorf("request %d: %s?%s (the next link must keep the filters)", i, r.Path, r.Query)
		}
	}
	status, _, body := e.raw(t, "GET", "/image/v2/images?name=paged&limit=3", "", nil)
	if status != 200 || !strings.Contains(string(body), `"next":"/v2/images?limit=3\u0026marker=`) ||
		!strings.Contains(string(body), `"first":"/v2/images?limit=3\u0026name=paged"`) || !strings.Contains(string(body), `"schema":"/v2/schemas/images"`) {
		t.Fatalf("page document: %s", body)
	}
	if _, err := images.List(e.image, images.ListOpts{Marker: "nope"}).AllPages(context.Background()); !gophercloud.ResponseCodeIs(err, 400) {
		t.Fatalf("unknown marker: %v", err)
	}
}

// TestPublishImageOverTheAPI publishes as the openstack CLI does: create
// (queued), upload (active), then change properties and tags.
func TestPublishImageOverTheAPI(t *testing.T) {
	e := start(t, sim.Options{BootTime: sim.Fixed(0)})
	ctx := context.Background()
	img, err := images.Create(ctx, e.image, images.CreateOpts{Name: "uploaded", ContainerFormat: "bare", DiskFormat: "qcow2",
		Tags: []string{"gold"}, Properties: map[string]string{"os_distro": "ubuntu"}}).Extract()
	if err != nil || img.Status != images.ImageStatusQueued || img.Properties["os_distro"] != "ubuntu" || img.Visibility != images.ImageVisibilityShared {
		t.Fatalf("create image: %+v, %v", img, err)
	}
	if _, err := e.compute.Post(ctx, e.compute.ServiceURL("servers"), map[string]any{"server": map[string]any{
		"name": "x", "imageRef": img.ID, "flavorRef": "1", "networks": "auto"}}, nil, nil); !gophercloud.ResponseCodeIs(err, 400) {
		t.Fatalf("booting a queued image: %v, want 400", err)
	}
	data := []byte("qcow2 bytes")
	if err := imagedata.Upload(ctx, e.image, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	got, err := images.Get(ctx, e.image, img.ID).Extract()
	if err != nil || got.Status != images.ImageStatusActive || got.SizeBytes != int64(len(data)) || got.Checksum != fmt.Sprintf("%x", md5.Sum(data)) {
		t.Fatalf("after upload: %+v, %v", got, err)
	}
	if err := imagedata.Upload(ctx, e.image, img.ID, bytes.NewReader(data)).ExtractErr(); !gophercloud.ResponseCodeIs(err, 409) {
		t.Fatalf("uploading twice: %v, want 409", err)
	}
	got, err = images.Update(ctx, e.image, img.ID, images.UpdateOpts{
		images.ReplaceImageName{NewName: "renamed"},
		images.UpdateImageProperty{Op: images.AddOp, Name: "phoenix_role", Value: "web"},
		images.UpdateImageProperty{Op: images.RemoveOp, Name: "os_distro"},
		images.ReplaceImageTags{NewTags: []string{"gold", "cis"}},
	}).Extract()
	if err != nil || got.Name != "renamed" || got.Properties["phoenix_role"] != "web" || got.Properties["os_distro"] != nil || !slices.Equal(got.Tags, []string{"gold", "cis"}) {
		t.Fatalf("patch: %+v, %v", got, err)
	}
	if names := imageNames(t, e.image, propertyQuery{images.ListOpts{Tags: []string{"cis"}}, "phoenix_role=web"}); !slices.Equal(names, []string{"renamed"}) {
		t.Fatalf("list after patch: %v", names)
	}
	boot := e.opts("from-published")
	boot.ImageRef = img.ID
	if _, err := servers.Create(ctx, e.compute, boot, nil).Extract(); err != nil {
		t.Fatalf("boot from the published image: %v", err)
	}
	if err := images.Delete(ctx, e.image, img.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := images.Get(ctx, e.image, img.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
		t.Fatalf("after delete: %v", err)
	}
}
