package openstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// ListServers lists the servers carrying tag with one request per page.
// The servers' Metadata, Tags and Addresses are shared with later lists:
// callers read them and never change them.
//
// Listing is the largest cost of a reconcile, and a group is listed every
// round while it rolls out, so a page is decoded once, straight into the
// fields Phoenix reads (gophercloud's pager decodes a page into generic
// maps, then re-encodes and decodes it again for its emptiness check and
// once more for the caller), and a server whose answer is byte for byte
// the one of the last list is not decoded again. The request itself still
// goes through gophercloud's compute client (its token, microversion and
// retrying transport).
func (c *Cloud) ListServers(ctx context.Context, tag string) ([]provisioner.Server, error) {
	var out []provisioner.Server
	seen := map[string]int{}
	pages := 0
	c.listedMu.Lock()
	last := c.listed[tag]
	c.listedMu.Unlock()
	now := make(map[uint64]decoded, len(last))
	query, err := servers.ListOpts{Tags: tag, Limit: c.pageSize}.ToServerListQuery()
	if err != nil {
		return nil, fmt.Errorf("list servers tagged %q: %w", tag, err)
	}
	url := c.compute.ServiceURL("servers", "detail") + query
	for url != "" {
		page, err := c.listPage(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("list servers tagged %q: %w", tag, err)
		}
		pages++
		for _, raw := range page.Servers {
			key := maphash.Bytes(listSeed, raw)
			d, ok := last[key]
			if !ok || !bytes.Equal(d.raw, raw) {
				var ns novaServer
				if err := json.Unmarshal(raw, &ns); err != nil {
					return nil, fmt.Errorf("list servers tagged %q: read a server: %w", tag, err)
				}
				d = decoded{raw: raw, server: ns.server()}
			}
			now[key] = d
			s := d.server
			// Nova ignores filters it does not know; never trust that the
			// tag filter was applied.
			if !slices.Contains(s.Tags, tag) {
				return nil, fmt.Errorf("list servers tagged %q: the compute API returned server %s without the tag: the tag filter was ignored (microversion below 2.26?)", tag, s.ID)
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
		url = ""
		if len(page.Servers) > 0 {
			// A page without servers is the last, whatever its links say.
			for _, l := range page.Links {
				if l.Rel == "next" {
					url = l.Href
				}
			}
		}
	}
	c.listedMu.Lock()
	if c.listed == nil {
		c.listed = map[string]map[uint64]decoded{}
	}
	c.listed[tag] = now
	c.listedMu.Unlock()
	c.log.Debug("listed servers", zap.String("tag", tag), zap.Int("servers", len(out)), zap.Int("pages", pages))
	return out, nil
}

// listSeed hashes the servers of a list answer.
var listSeed = maphash.MakeSeed()

// decoded is a server of a list answer: its bytes, and what they say.
type decoded struct {
	raw    []byte
	server provisioner.Server
}

// novaPage is one page of GET /servers/detail.
type novaPage struct {
	Servers [][]byte
	Links   []gophercloud.Link
}

// listPage gets one page and cuts it into its servers' answers. gjson
// finds where each server's object starts and ends far faster than a
// decoder, which must walk every byte through its state machine twice
// to hand out raw values; only servers that changed are decoded.
func (c *Cloud) listPage(ctx context.Context, url string) (novaPage, error) {
	resp, err := c.compute.Get(ctx, url, nil, &gophercloud.RequestOpts{OkCodes: []int{200}, KeepResponseBody: true})
	if err != nil {
		return novaPage{}, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return novaPage{}, fmt.Errorf("read the answer: %w", err)
	}
	if !gjson.ValidBytes(body) {
		return novaPage{}, fmt.Errorf("the answer is not JSON (%d bytes)", len(body))
	}
	list := gjson.GetBytes(body, "servers")
	if !list.IsArray() {
		return novaPage{}, fmt.Errorf("the answer has no servers list")
	}
	var page novaPage
	list.ForEach(func(_, v gjson.Result) bool {
		if v.Index > 0 {
			page.Servers = append(page.Servers, body[v.Index:v.Index+len(v.Raw)])
		} else {
			page.Servers = append(page.Servers, []byte(v.Raw))
		}
		return true
	})
	if links := gjson.GetBytes(body, "servers_links"); links.Exists() {
		if err := json.Unmarshal([]byte(links.Raw), &page.Links); err != nil {
			return novaPage{}, fmt.Errorf("read servers_links: %w", err)
		}
	}
	return page, nil
}

// novaServer holds the fields of a Nova server that Phoenix reads.
type novaServer struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Status           string            `json:"status"`
	TaskState        string            `json:"OS-EXT-STS:task_state"`
	AvailabilityZone string            `json:"OS-EXT-AZ:availability_zone"`
	Metadata         map[string]string `json:"metadata"`
	Created          time.Time         `json:"created"`
	// LaunchedAt has no zone in Nova's answer.
	LaunchedAt gophercloud.JSONRFC3339MilliNoZ `json:"OS-SRV-USG:launched_at"`
	Fault      struct {
		Message string `json:"message"`
	} `json:"fault"`
	// Image is an object with the id, or "" for a server booted from a
	// volume.
	Image     json.RawMessage `json:"image"`
	Tags      []string        `json:"tags"`
	Addresses map[string][]struct {
		Addr string `json:"addr"`
	} `json:"addresses"`
	// Volumes are the attached volumes, in every server of a list.
	Volumes []struct {
		ID string `json:"id"`
	} `json:"os-extended-volumes:volumes_attached"`
}

func (s *novaServer) server() provisioner.Server {
	out := provisioner.Server{
		ID:               s.ID,
		Name:             s.Name,
		Status:           s.Status,
		TaskState:        s.TaskState,
		AvailabilityZone: s.AvailabilityZone,
		Metadata:         s.Metadata,
		Created:          s.Created,
		LaunchedAt:       time.Time(s.LaunchedAt),
		Fault:            s.Fault.Message,
		Tags:             s.Tags,
	}
	var image struct {
		ID string `json:"id"`
	}
	if len(s.Image) > 0 && s.Image[0] == '{' && json.Unmarshal(s.Image, &image) == nil {
		out.ImageID = image.ID
	}
	out.Addresses = make(map[string][]string, len(s.Addresses))
	for network, list := range s.Addresses {
		for _, a := range list {
			if a.Addr != "" {
				out.Addresses[network] = append(out.Addresses[network], a.Addr)
			}
		}
	}
	for _, v := range s.Volumes {
		if v.ID != "" {
			out.Volumes = append(out.Volumes, v.ID)
		}
	}
	return out
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
