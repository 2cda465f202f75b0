package openstack

import (
	"context"
	"fmt"
	"net/http"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/phoenix-ops/phoenix/provisioner"
)

var _ provisioner.ServerActions = (*Cloud)(nil)

// StopServer sends os-stop. Nova refuses to stop a stopped server with
// 409 ("while it is in vm_state stopped"); that refusal is read as done
// once a look at the server confirms it is SHUTOFF, so that a controller
// resuming after a crash can send the stop again without harm.
func (c *Cloud) StopServer(ctx context.Context, id string) error {
	err := servers.Stop(ctx, c.compute, id).ExtractErr()
	return c.settleAction(ctx, "stop", id, err, provisioner.StatusShutoff)
}

// StartServer sends os-start; a server already ACTIVE is started.
func (c *Cloud) StartServer(ctx context.Context, id string) error {
	err := servers.Start(ctx, c.compute, id).ExtractErr()
	return c.settleAction(ctx, "start", id, err, provisioner.StatusActive)
}

// RebuildServer sends Nova's rebuild action with the new image. The server
// keeps its ID, ports, addresses and attached volumes; with metadata set,
// Nova replaces the server's metadata with it.
func (c *Cloud) RebuildServer(ctx context.Context, id, imageID string, metadata map[string]string) error {
	_, err := servers.Rebuild(ctx, c.compute, id, servers.RebuildOpts{ImageRef: imageID, Metadata: metadata}).Extract()
	if isNotFound(err) {
		return fmt.Errorf("rebuild server %s with image %s: %w", id, imageID, provisioner.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("rebuild server %s with image %s: %w", id, imageID, refusal(err))
	}
	return nil
}

// settleAction turns the answer of a power action into the interface's
// meaning: a 409 for a server already in the wanted status is success.
func (c *Cloud) settleAction(ctx context.Context, action, id string, err error, done string) error {
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return fmt.Errorf("%s server %s: %w", action, id, provisioner.ErrNotFound)
	}
	if status, _, ok := statusOf(err); ok && status == http.StatusConflict {
		s, gerr := servers.Get(ctx, c.compute, id).Extract()
		if gerr == nil && s.Status == done && s.TaskState == "" {
			return nil
		}
	}
	return fmt.Errorf("%s server %s: %w", action, id, refusal(err))
}
