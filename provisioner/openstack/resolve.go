package openstack

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servergroups"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// imageQuery adds Glance's filters on custom properties, which
// images.ListOpts cannot express, to the standard options.
type imageQuery struct {
	images.ListOpts
	properties map[string]string
}

func (q imageQuery) ToImageListQuery() (string, error) {
	s, err := q.ListOpts.ToImageListQuery()
	if err != nil {
		return "", err
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	values := u.Query()
	for _, k := range slices.Sorted(maps.Keys(q.properties)) {
		values.Set(k, q.properties[k])
	}
	u.RawQuery = values.Encode()
	return u.String(), nil
}

// ResolveImage returns the active image the selector designates. The
// filters are sent to Glance and checked again here, because a filter the
// service does not know is silently ignored.
func (c *Cloud) ResolveImage(ctx context.Context, sel provisioner.ImageSelector) (provisioner.Image, error) {
	if sel.ID != "" {
		img, err := images.Get(ctx, c.image, sel.ID).Extract()
		if isNotFound(err) {
			return provisioner.Image{}, fmt.Errorf("image %s: %w", sel.ID, provisioner.ErrNotFound)
		}
		if err != nil {
			return provisioner.Image{}, fmt.Errorf("get image %s: %w", sel.ID, err)
		}
		if img.Status != images.ImageStatusActive {
			return provisioner.Image{}, fmt.Errorf("image %s (%s) is %s, not active", img.ID, img.Name, img.Status)
		}
		return toImage(img), nil
	}

	q := imageQuery{
		ListOpts: images.ListOpts{
			Name:   sel.Name,
			Status: images.ImageStatusActive,
			Tags:   sel.Tags,
			Sort:   "created_at:desc",
			Limit:  c.pageSize,
		},
		properties: sel.Properties,
	}
	var matches []images.Image
	err := images.List(c.image, q).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := images.ExtractImages(page)
		if err != nil {
			return false, err
		}
		for _, img := range list {
			if matchesImage(img, sel) {
				matches = append(matches, img)
			}
		}
		return true, nil
	})
	if err != nil {
		return provisioner.Image{}, fmt.Errorf("list images for %s: %w", describe(sel), err)
	}
	if len(matches) == 0 {
		return provisioner.Image{}, fmt.Errorf("no active image matches %s: %w", describe(sel), provisioner.ErrNotFound)
	}
	sort.SliceStable(matches, func(i, j int) bool { return matches[i].CreatedAt.After(matches[j].CreatedAt) })
	if len(matches) > 1 && !sel.Newest {
		ids := make([]string, 0, 3)
		for i := 0; i < len(matches) && i < 3; i++ {
			ids = append(ids, matches[i].ID)
		}
		return provisioner.Image{}, fmt.Errorf("%d active images match %s (%s…): set newest: true or select by id",
			len(matches), describe(sel), strings.Join(ids, ", "))
	}
	return toImage(&matches[0]), nil
}

func matchesImage(img images.Image, sel provisioner.ImageSelector) bool {
	if img.Status != images.ImageStatusActive {
		return false
	}
	if sel.Name != "" && img.Name != sel.Name {
		return false
	}
	// A snapshot of a server (Nova's createImage) inherits its base
	// image's properties, and would match a selector by properties; a
	// gold image is never one.
	if fmt.Sprint(img.Properties["image_type"]) == "snapshot" {
		return false
	}
	for _, want := range sel.Tags {
		if !slices.Contains(img.Tags, want) {
			return false
		}
	}
	for k, want := range sel.Properties {
		got, ok := img.Properties[k]
		if !ok || fmt.Sprint(got) != want {
			return false
		}
	}
	return true
}

func describe(sel provisioner.ImageSelector) string {
	var parts []string
	if sel.Name != "" {
		parts = append(parts, fmt.Sprintf("name %q", sel.Name))
	}
	for _, k := range slices.Sorted(maps.Keys(sel.Properties)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, sel.Properties[k]))
	}
	for _, t := range sel.Tags {
		parts = append(parts, fmt.Sprintf("tag %q", t))
	}
	return strings.Join(parts, ", ")
}

func toImage(img *images.Image) provisioner.Image {
	return provisioner.Image{ID: img.ID, Name: img.Name, Status: string(img.Status), Created: img.CreatedAt, Tags: img.Tags}
}

// ResolveFlavor matches a flavor ID first, then a unique name. Nova has no
// name filter on flavors, so this lists them (one request a page).
func (c *Cloud) ResolveFlavor(ctx context.Context, nameOrID string) (string, error) {
	pages, err := flavors.ListDetail(c.compute, flavors.ListOpts{AccessType: flavors.AllAccess}).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("list flavors: %w", err)
	}
	list, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return "", fmt.Errorf("list flavors: %w", err)
	}
	var byName []string
	for _, f := range list {
		if f.ID == nameOrID {
			return f.ID, nil
		}
		if f.Name == nameOrID {
			byName = append(byName, f.ID)
		}
	}
	return unique("flavor", nameOrID, byName)
}

// ResolveNetwork matches a network ID first, then a unique name.
func (c *Cloud) ResolveNetwork(ctx context.Context, nameOrID string) (string, error) {
	if c.network == nil {
		return "", fmt.Errorf("network %q: no network (Neutron) endpoint in the catalog: %w", nameOrID, c.netErr)
	}
	for _, opts := range []networks.ListOpts{{ID: nameOrID}, {Name: nameOrID}} {
		pages, err := networks.List(c.network, opts).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list networks: %w", err)
		}
		list, err := networks.ExtractNetworks(pages)
		if err != nil {
			return "", fmt.Errorf("list networks: %w", err)
		}
		var ids []string
		for _, n := range list {
			if n.ID == nameOrID || n.Name == nameOrID {
				ids = append(ids, n.ID)
			}
		}
		if len(ids) > 0 {
			return unique("network", nameOrID, ids)
		}
	}
	return "", fmt.Errorf("network %q: %w", nameOrID, provisioner.ErrNotFound)
}

// ResolveServerGroup matches a server group ID first, then a unique name.
func (c *Cloud) ResolveServerGroup(ctx context.Context, nameOrID string) (string, error) {
	pages, err := servergroups.List(c.compute, nil).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("list server groups: %w", err)
	}
	list, err := servergroups.ExtractServerGroups(pages)
	if err != nil {
		return "", fmt.Errorf("list server groups: %w", err)
	}
	var byName []string
	for _, g := range list {
		if g.ID == nameOrID {
			return g.ID, nil
		}
		if g.Name == nameOrID {
			byName = append(byName, g.ID)
		}
	}
	return unique("server group", nameOrID, byName)
}

// ResolveKeyPair finds the key pair a create names. Nova takes key pairs
// by name, so creates never look one up; `phoenix config check --cloud`
// does, to name a missing one before a create fails on it.
func (c *Cloud) ResolveKeyPair(ctx context.Context, name string) error {
	pages, err := keypairs.List(c.compute, nil).AllPages(ctx)
	if err != nil {
		return fmt.Errorf("list key pairs: %w", err)
	}
	list, err := keypairs.ExtractKeyPairs(pages)
	if err != nil {
		return fmt.Errorf("list key pairs: %w", err)
	}
	for _, kp := range list {
		if kp.Name == name {
			return nil
		}
	}
	return fmt.Errorf("key pair %q: %w", name, provisioner.ErrNotFound)
}

// ResolveSecurityGroup matches a security group ID first, then a unique
// name, as Nova does with the names a create sends.
func (c *Cloud) ResolveSecurityGroup(ctx context.Context, nameOrID string) (string, error) {
	nc, err := c.networkClient()
	if err != nil {
		return "", fmt.Errorf("security group %q: %w", nameOrID, err)
	}
	for _, opts := range []groups.ListOpts{{ID: nameOrID}, {Name: nameOrID}} {
		pages, err := groups.List(nc, opts).AllPages(ctx)
		if err != nil {
			return "", fmt.Errorf("list security groups: %w", err)
		}
		list, err := groups.ExtractGroups(pages)
		if err != nil {
			return "", fmt.Errorf("list security groups: %w", err)
		}
		var ids []string
		for _, g := range list {
			if g.ID == nameOrID || g.Name == nameOrID {
				ids = append(ids, g.ID)
			}
		}
		if len(ids) > 0 {
			return unique("security group", nameOrID, ids)
		}
	}
	return "", fmt.Errorf("security group %q: %w", nameOrID, provisioner.ErrNotFound)
}

func unique(kind, name string, ids []string) (string, error) {
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%s %q: %w", kind, name, provisioner.ErrNotFound)
	case 1:
		return ids[0], nil
	default:
		return "", fmt.Errorf("%s name %q is ambiguous: %d match (%s); use the ID", kind, name, len(ids), strings.Join(ids, ", "))
	}
}
