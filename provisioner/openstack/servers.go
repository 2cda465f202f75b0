package openstack

import (
	"context"
	"fmt"
	"slices"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// ListServers lists the servers carrying tag with one request per page.
func (c *Cloud) ListServers(ctx context.Context, tag string) ([]provisioner.Server, error) {
	var out []provisioner.Server
	seen := map[string]int{}
	pages := 0
	opts := servers.ListOpts{Tags: tag, Limit: c.pageSize}
	err := servers.List(c.compute, opts).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		pages++
		list, err := servers.ExtractServers(page)
		if err != nil {
			return false, err
		}
		for i := range list {
			s := fromNova(&list[i])
			// Nova ignores filters it does not know; never trust that the
			// tag filter was applied.
			if !slices.Contains(s.Tags, tag) {
				return false, fmt.Errorf("the compute API returned server %s without tag %q: the tag filter was ignored (microversion below 2.26?)", s.ID, tag)
			}
			// While a server is being scheduled Nova may list it twice,
			// once as a build request and once as an instance (seen on a
			// real Nova paging with markers): keep one, the further along.
			if j, dup := seen[s.ID]; dup {
				if out[j].Status == provisioner.StatusBuild {
					out[j] = s
				}
				continue
			}
			seen[s.ID] = len(out)
			out = append(out, s)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list servers tagged %q: %w", tag, err)
	}
	c.log.Debug("listed servers", zap.String("tag", tag), zap.Int("servers", len(out)), zap.Int("pages", pages))
	return out, nil
}

// CreateServer boots one server with its tags and metadata in the create
// call. It is sent once: see newHTTPClient for why it is never retried
// after the cloud may have acted.
func (c *Cloud) CreateServer(ctx context.Context, spec provisioner.ServerSpec) (provisioner.Server, error) {
	nets := make([]servers.Network, len(spec.NetworkIDs))
	for i, id := range spec.NetworkIDs {
		nets[i] = servers.Network{UUID: id}
	}
	base := servers.CreateOpts{
		Name:             spec.Name,
		ImageRef:         spec.ImageID,
		FlavorRef:        spec.FlavorID,
		SecurityGroups:   spec.SecurityGroups,
		UserData:         spec.UserData,
		AvailabilityZone: spec.AvailabilityZone,
		Networks:         nets,
		Metadata:         spec.Metadata,
		Tags:             spec.Tags,
	}
	var opts servers.CreateOptsBuilder = base
	if spec.KeyName != "" {
		// servers.CreateOpts has no key name; the keypairs extension adds it.
		opts = keypairs.CreateOptsExt{CreateOptsBuilder: base, KeyName: spec.KeyName}
	}
	var hints servers.SchedulerHintOptsBuilder
	if spec.ServerGroupID != "" {
		hints = servers.SchedulerHintOpts{Group: spec.ServerGroupID}
	}
	created, err := servers.Create(ctx, c.compute, opts, hints).Extract()
	if err != nil {
		return provisioner.Server{}, classifyCreate(spec.Name, err)
	}
	c.log.Debug("created server", zap.String("server", created.ID), zap.String("name", spec.Name))
	return provisioner.Server{
		ID:       created.ID,
		Name:     spec.Name,
		Status:   provisioner.StatusBuild,
		ImageID:  spec.ImageID,
		Metadata: spec.Metadata,
		Tags:     spec.Tags,
	}, nil
}

// SetServerMetadata merges keys into a server's metadata (POST, which
// leaves other keys alone — PUT would replace them all).
func (c *Cloud) SetServerMetadata(ctx context.Context, id string, metadata map[string]string) error {
	_, err := servers.UpdateMetadata(ctx, c.compute, id, servers.MetadataOpts(metadata)).Extract()
	if err != nil {
		return fmt.Errorf("set metadata of server %s: %w", id, err)
	}
	return nil
}

// DeleteServer deletes a server; one that is already gone is deleted.
func (c *Cloud) DeleteServer(ctx context.Context, id string) error {
	err := servers.Delete(ctx, c.compute, id).ExtractErr()
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("delete server %s: %w", id, err)
	}
	return nil
}

func fromNova(s *servers.Server) provisioner.Server {
	out := provisioner.Server{
		ID:               s.ID,
		Name:             s.Name,
		Status:           s.Status,
		TaskState:        s.TaskState,
		AvailabilityZone: s.AvailabilityZone,
		Metadata:         s.Metadata,
		Created:          s.Created,
		LaunchedAt:       s.LaunchedAt,
		Fault:            s.Fault.Message,
	}
	if id, ok := s.Image["id"].(string); ok {
		out.ImageID = id
	}
	if s.Tags != nil {
		out.Tags = *s.Tags
	}
	out.Addresses = make(map[string][]string, len(s.Addresses))
	for network, raw := range s.Addresses {
		list, _ := raw.([]any)
		for _, item := range list {
			a, _ := item.(map[string]any)
			if addr, ok := a["addr"].(string); ok {
				out.Addresses[network] = append(out.Addresses[network], addr)
			}
		}
	}
	return out
}
