// Package devcloud_test checks by hand that the development cloud's Cinder
// works with Nova: it is no test of Phoenix.
//
//	sudo cat /var/lib/phoenix-devcloud/clouds.yaml >/tmp/devcloud.yaml
//	PHOENIX_DEVCLOUD_CLOUDS=/tmp/devcloud.yaml go test -v -count=1 ./examples/devcloud/
package devcloud_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
)

// TestCinderSmoke: a 1 GiB volume, a forced snapshot of it, attached to a
// fake-driver server through Nova, detached, attached to a second server;
// everything it made is deleted at the end.
func TestCinderSmoke(t *testing.T) {
	cloudsFile := os.Getenv("PHOENIX_DEVCLOUD_CLOUDS")
	if cloudsFile == "" {
		t.Skip("the development cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	ao, eo, _, err := clouds.Parse(clouds.WithCloudName("devcloud"), clouds.WithLocations(cloudsFile))
	if err != nil {
		t.Fatal(err)
	}
	provider, err := config.NewProviderClient(ctx, ao)
	if err != nil {
		t.Fatal(err)
	}
	cinder := client(t)(gcopenstack.NewBlockStorageV3(provider, eo))
	nova := client(t)(gcopenstack.NewComputeV2(provider, eo))
	glance := client(t)(gcopenstack.NewImageV2(provider, eo))
	neutron := client(t)(gcopenstack.NewNetworkV2(provider, eo))
	name := "cinder-smoke-" + uuid.NewString()[:8]

	vol, err := volumes.Create(ctx, cinder, volumes.CreateOpts{Name: name, Size: 1}, nil).Extract()
	if err != nil {
		t.Fatalf("create volume: %v", err)
	}
	t.Cleanup(func() { deleteVolume(t, cinder, vol.ID) })
	step(t, "volume "+vol.ID+" available", func() error { return volumeStatus(ctx, cinder, vol.ID, "available") })

	snap, err := snapshots.Create(ctx, cinder, snapshots.CreateOpts{VolumeID: vol.ID, Name: name, Force: true}).Extract()
	if err != nil {
		t.Fatalf("create snapshot: %v", err)
	}
	// Registered after the volume's: cleanups run last-in first-out, and a
	// volume with a snapshot cannot be deleted.
	t.Cleanup(func() { deleteSnapshot(t, cinder, snap.ID) })
	step(t, "snapshot "+snap.ID+" available", func() error {
		return poll(ctx, func() (string, error) {
			s, err := snapshots.Get(ctx, cinder, snap.ID).Extract()
			if err != nil {
				return "", err
			}
			return s.Status, nil
		}, "available", "error")
	})

	image := firstActiveImage(t, ctx, glance)
	flavor := idByName(t, ctx, "flavor m1.small", func() (string, error) {
		all, err := flavors.ListDetail(nova, nil).AllPages(ctx)
		if err != nil {
			return "", err
		}
		list, err := flavors.ExtractFlavors(all)
		for _, f := range list {
			if f.Name == "m1.small" {
				return f.ID, nil
			}
		}
		return "", err
	})
	network := idByName(t, ctx, "network phoenix-net", func() (string, error) {
		all, err := networks.List(neutron, networks.ListOpts{Name: "phoenix-net"}).AllPages(ctx)
		if err != nil {
			return "", err
		}
		list, err := networks.ExtractNetworks(all)
		if len(list) > 0 {
			return list[0].ID, nil
		}
		return "", err
	})
	boot := func(suffix string) string {
		s, err := servers.Create(ctx, nova, servers.CreateOpts{
			Name: name + "-" + suffix, ImageRef: image, FlavorRef: flavor,
			Networks: []servers.Network{{UUID: network}},
		}, nil).Extract()
		if err != nil {
			t.Fatalf("create server: %v", err)
		}
		t.Cleanup(func() { deleteServer(t, nova, s.ID) })
		return s.ID
	}
	first, second := boot("a"), boot("b")
	for _, id := range []string{first, second} {
		step(t, "server "+id+" ACTIVE", func() error {
			return poll(ctx, func() (string, error) {
				s, err := servers.Get(ctx, nova, id).Extract()
				if err != nil {
					return "", err
				}
				return s.Status, nil
			}, "ACTIVE", "ERROR")
		})
	}

	attach := func(server string) {
		a, err := volumeattach.Create(ctx, nova, server, volumeattach.CreateOpts{VolumeID: vol.ID}).Extract()
		if err != nil {
			t.Fatalf("attach to %s: %v", server, err)
		}
		step(t, fmt.Sprintf("attached to %s as %s: in-use", server, a.Device), func() error {
			return volumeStatus(ctx, cinder, vol.ID, "in-use")
		})
	}
	attach(first)
	if err := volumeattach.Delete(ctx, nova, first, vol.ID).ExtractErr(); err != nil {
		t.Fatalf("detach from %s: %v", first, err)
	}
	step(t, "detached from "+first+": available", func() error { return volumeStatus(ctx, cinder, vol.ID, "available") })
	attach(second)
	// The cleanups delete the servers first, which detaches the volume
	// (Nova again), then the snapshot, then the volume.
}

func client(t *testing.T) func(*gophercloud.ServiceClient, error) *gophercloud.ServiceClient {
	return func(c *gophercloud.ServiceClient, err error) *gophercloud.ServiceClient {
		t.Helper()
		if err != nil {
			t.Fatalf("service client: %v", err)
		}
		return c
	}
}

// step runs a wait and logs how long it took.
func step(t *testing.T, what string, wait func() error) {
	t.Helper()
	began := time.Now()
	if err := wait(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s after %.1fs", what, time.Since(began).Seconds())
}

// poll asks for a status every half second until it is want; the failed
// status, or the context's end, stops it.
func poll(ctx context.Context, get func() (string, error), want, failed string) error {
	for {
		status, err := get()
		switch {
		case err != nil:
			return err
		case status == want:
			return nil
		case status == failed:
			return fmt.Errorf("status %s", status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s: %w", status, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func volumeStatus(ctx context.Context, c *gophercloud.ServiceClient, id, want string) error {
	return poll(ctx, func() (string, error) {
		v, err := volumes.Get(ctx, c, id).Extract()
		if err != nil {
			return "", err
		}
		return v.Status, nil
	}, want, "error")
}

func firstActiveImage(t *testing.T, ctx context.Context, glance *gophercloud.ServiceClient) string {
	t.Helper()
	all, err := images.List(glance, images.ListOpts{Status: images.ImageStatusActive, Limit: 1}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list, err := images.ExtractImages(all)
	if err != nil || len(list) == 0 {
		t.Fatalf("no active image (%v)", err)
	}
	return list[0].ID
}

func idByName(t *testing.T, ctx context.Context, what string, find func() (string, error)) string {
	t.Helper()
	id, err := find()
	if err != nil || id == "" {
		t.Fatalf("%s not found (%v)", what, err)
	}
	return id
}

// The deletes wait until the thing is gone, with a timeout of their own,
// so the next cleanup finds nothing in its way.
func gone(t *testing.T, what string, del func(context.Context) error, get func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := del(ctx); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
		t.Errorf("delete %s: %v", what, err)
		return
	}
	for {
		err := get(ctx)
		if gophercloud.ResponseCodeIs(err, 404) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s still there after 2 minutes (%v)", what, err)
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func deleteServer(t *testing.T, c *gophercloud.ServiceClient, id string) {
	gone(t, "server "+id,
		func(ctx context.Context) error { return servers.Delete(ctx, c, id).ExtractErr() },
		func(ctx context.Context) error { return servers.Get(ctx, c, id).Err })
}

func deleteSnapshot(t *testing.T, c *gophercloud.ServiceClient, id string) {
	gone(t, "snapshot "+id,
		func(ctx context.Context) error { return snapshots.Delete(ctx, c, id).ExtractErr() },
		func(ctx context.Context) error { return snapshots.Get(ctx, c, id).Err })
}

func deleteVolume(t *testing.T, c *gophercloud.ServiceClient, id string) {
	gone(t, "volume "+id,
		func(ctx context.Context) error {
			// The servers' deletes detach it; wait for that first.
			if err := volumeStatus(ctx, c, id, "available"); err != nil {
				return err
			}
			return volumes.Delete(ctx, c, id, nil).ExtractErr()
		},
		func(ctx context.Context) error { return volumes.Get(ctx, c, id).Err })
}
