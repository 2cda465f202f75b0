package main

import (
	"bufio"
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// `phoenix sim --regions` serves every region behind the one Keystone of
// the clouds.yaml it writes, each seeded with the demo image, and says
// where each region is.
func TestSimRegions(t *testing.T) {
	cloudsFile := filepath.Join(t.TempDir(), "clouds.yaml")
	f := &simFlags{listen: "127.0.0.1:0", cloudsOut: cloudsFile, cloud: demoCloud, image: "demo-gold",
		bootTime: time.Millisecond, quota: -1, regions: []string{"RegionTwo", "RegionThree"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runSim(ctx, w, f)
		_ = w.Close()
	}()
	regionAt := regexp.MustCompile(`^region (\S+) at (\S+): choose it with OS_REGION_NAME=`)
	at := map[string]string{}
	var said []string
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "Interrupt") {
		said = append(said, sc.Text())
		if m := regionAt.FindStringSubmatch(sc.Text()); m != nil {
			at[m[1]] = m[2]
		}
	}
	if len(at) != 2 {
		t.Fatalf("sim does not say where its regions are:\n%s", strings.Join(said, "\n"))
	}

	for _, region := range []string{"RegionTwo", "RegionThree"} {
		ao, eo, _, err := clouds.Parse(clouds.WithCloudName(demoCloud), clouds.WithLocations(cloudsFile), clouds.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		p, err := config.NewProviderClient(ctx, ao)
		if err != nil {
			t.Fatalf("authenticate for %s: %v", region, err)
		}
		c, err := openstack.NewImageV2(p, eo)
		if err != nil || !strings.HasPrefix(c.Endpoint, at[region]+"/") {
			t.Fatalf("image service of %s: %v, %v; want it at %s", region, c, err, at[region])
		}
		pages, err := images.List(c, images.ListOpts{Name: "demo-gold"}).AllPages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if list, _ := images.ExtractImages(pages); len(list) != 1 {
			t.Errorf("%s has %d images demo-gold, want 1", region, len(list))
		}
		p.HTTPClient.CloseIdleConnections()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
