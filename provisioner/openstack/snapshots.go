package openstack

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// SnapshotServer runs Nova's createImage; with microversion 2.45 and later
// the answer carries the new image's ID.
func (c *Cloud) SnapshotServer(ctx context.Context, serverID, name string, properties map[string]string) (string, error) {
	id, err := servers.CreateImage(ctx, c.compute, serverID, servers.CreateImageOpts{Name: name, Metadata: properties}).ExtractImageID()
	if err != nil {
		if isNotFound(err) {
			return "", fmt.Errorf("snapshot server %s: %w", serverID, provisioner.ErrNotFound)
		}
		return "", fmt.Errorf("snapshot server %s: %w", serverID, redact(err))
	}
	return id, nil
}

// Image reads one Glance image.
func (c *Cloud) Image(ctx context.Context, id string) (provisioner.Image, error) {
	img, err := images.Get(ctx, c.image, id).Extract()
	if isNotFound(err) {
		return provisioner.Image{}, fmt.Errorf("image %s: %w", id, provisioner.ErrNotFound)
	}
	if err != nil {
		return provisioner.Image{}, fmt.Errorf("get image %s: %w", id, err)
	}
	return toImage(img), nil
}

// ImagesWith lists images by custom properties, sent to Glance and checked
// again here (a filter Glance does not know is ignored).
func (c *Cloud) ImagesWith(ctx context.Context, props map[string]string) ([]provisioner.Image, error) {
	var out []provisioner.Image
	q := imageQuery{ListOpts: images.ListOpts{Limit: c.pageSize, Sort: "created_at:desc"}, properties: props}
	err := images.List(c.image, q).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := images.ExtractImages(page)
		if err != nil {
			return false, err
		}
	next:
		for _, img := range list {
			for k, want := range props {
				if fmt.Sprint(img.Properties[k]) != want {
					continue next
				}
			}
			out = append(out, toImage(&img))
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

// DeleteImage deletes a Glance image; one already gone is deleted.
func (c *Cloud) DeleteImage(ctx context.Context, id string) error {
	err := images.Delete(ctx, c.image, id).ExtractErr()
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete image %s: %w", id, err)
	}
	return nil
}

var _ provisioner.Snapshots = (*Cloud)(nil)

// PublishImage uploads data as a new image of the name and waits until
// Glance has it active: what a security team does when it publishes a
// patched gold image. Phoenix itself never publishes; the benchmark on a
// real cloud does.
func (c *Cloud) PublishImage(ctx context.Context, name string, data io.Reader) (provisioner.Image, error) {
	img, err := images.Create(ctx, c.image, images.CreateOpts{Name: name, ContainerFormat: "bare", DiskFormat: "raw"}).Extract()
	if err != nil {
		return provisioner.Image{}, fmt.Errorf("create image %s: %w", name, err)
	}
	if err := imagedata.Upload(ctx, c.image, img.ID, data).ExtractErr(); err != nil {
		return provisioner.Image{}, fmt.Errorf("upload image %s (%s): %w", name, img.ID, err)
	}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		got, err := c.Image(ctx, img.ID)
		if err != nil {
			return provisioner.Image{}, err
		}
		if got.Status == string(images.ImageStatusActive) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return provisioner.Image{}, fmt.Errorf("image %s (%s) is %s: %w", name, img.ID, got.Status, ctx.Err())
		case <-time.After(wait):
		}
	}
}
