package openstack

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// Glance adds and removes one tag by URL (PUT and DELETE
// /v2/images/{id}/tags/{tag}); gophercloud has no call for it, only a
// PATCH that replaces the whole list, which would race with whoever else
// tags the image (its pipeline). So these go through the image service
// client itself, with its auth, retries and error types.

// TagImage adds tag to the image; Glance answers 204 whether or not the
// image had it.
func (c *Cloud) TagImage(ctx context.Context, id, tag string) error {
	_, err := c.image.Put(ctx, c.imageTagURL(id, tag), nil, nil, &gophercloud.RequestOpts{OkCodes: []int{http.StatusNoContent}})
	if err != nil {
		return imageTagError("tag", id, tag, err)
	}
	return nil
}

// UntagImage removes tag from the image. Glance answers 404 for a tag the
// image does not have, or an image that is gone: nothing to remove.
func (c *Cloud) UntagImage(ctx context.Context, id, tag string) error {
	_, err := c.image.Delete(ctx, c.imageTagURL(id, tag), &gophercloud.RequestOpts{OkCodes: []int{http.StatusNoContent}})
	if err != nil && !isNotFound(err) {
		return imageTagError("untag", id, tag, err)
	}
	return nil
}

func (c *Cloud) imageTagURL(id, tag string) string {
	return c.image.ServiceURL("images", url.PathEscape(id), "tags", url.PathEscape(tag))
}

// imageTagError names the image and the tag, and says a refusal is one
// (a 403 is Glance's policy: modify_image, by default the image owner's
// project or an admin).
func imageTagError(verb, id, tag string, err error) error {
	status, body, ok := statusOf(err)
	switch {
	case ok && isNotFound(err):
		return fmt.Errorf("%s image %s with %q: %w", verb, id, tag, provisioner.ErrNotFound)
	case ok && status >= 400 && status < 500 && status != http.StatusTooManyRequests:
		return fmt.Errorf("%s image %s with %q: %w", verb, id, tag, &provisioner.RefusedError{Status: status, Message: cloudMessage(body)})
	}
	return fmt.Errorf("%s image %s with %q: %w", verb, id, tag, err)
}
