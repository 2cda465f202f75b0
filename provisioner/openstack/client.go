package openstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/utils"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// ComputeMicroversion is the Nova microversion Phoenix speaks: 2.52 is the
// first that takes tags in the create call, which is how a server is owned
// from its first instant (2.26 brought the tag filters on list).
const ComputeMicroversion = "2.52"

// VolumeMicroversion is the Cinder microversion Phoenix speaks: 3.22 is
// the first that filters a snapshot list by metadata (below it Cinder drops
// the filter and lists every snapshot).
const VolumeMicroversion = "3.22"

// Options configure a Cloud.
type Options struct {
	// Cloud names a clouds.yaml entry. Empty means OS_CLOUD, and when that
	// is unset too, the OS_* variables (OS_AUTH_URL, OS_USERNAME, ...).
	Cloud string
	// CloudsFile, when set, is the only clouds.yaml consulted (like
	// OS_CLIENT_CONFIG_FILE).
	CloudsFile string
	// Region, when set, replaces the region the cloud's entry or
	// OS_REGION_NAME names: one location of a group placed over several.
	Region string
	Retry  RetryPolicy
	// PageSize is the limit sent with list requests; 0 lets the cloud
	// choose (Nova's default is 1000).
	PageSize int
	// LBWait paces the waits on a busy load balancer; zero takes
	// DefaultLBWait.
	LBWait LBWait
	// OnRequest, when set, is called after every attempt of every request
	// to the cloud (retries included): the source of request metrics.
	OnRequest func(RequestRecord)
	Logger    *zap.Logger
	// UserAgent, when set, is put before Phoenix's own in the User-Agent
	// of every request: a replica's id, so that the cloud's logs tell
	// which of several replicas sent a request.
	UserAgent string
	// Version is Phoenix's release, sent as phoenix/VERSION in the
	// User-Agent of every request, so a cloud's operators can tell which
	// build called; empty sends phoenix alone.
	Version string
}

// Cloud implements every service of provisioner.Cloud on gophercloud v2;
// Services hands them out.
type Cloud struct {
	compute  *gophercloud.ServiceClient
	image    *gophercloud.ServiceClient
	network  *gophercloud.ServiceClient // nil when the cloud has no Neutron
	netErr   error
	lb       *gophercloud.ServiceClient // nil when the cloud has no Octavia
	lbErr    error
	volume   *gophercloud.ServiceClient // nil when the cloud has no Cinder
	volErr   error
	lbWait   LBWait
	lbMu     sync.Mutex
	lbLocks  map[string]*sync.Mutex
	pageSize int
	log      *zap.Logger
	// listed remembers, per tag, each server of the last list as its
	// answer's bytes and what they decoded to (see ListServers).
	listedMu sync.Mutex
	listed   map[string]map[uint64]decoded
}

// New authenticates and checks that Nova speaks ComputeMicroversion. It
// fails with a message an operator can act on; no secret is ever part of it.
func New(ctx context.Context, opts Options) (*Cloud, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if opts.Retry == (RetryPolicy{}) {
		opts.Retry = DefaultRetryPolicy()
	}

	creds, err := readCredentials(opts)
	if err != nil {
		return nil, err
	}
	ao, eo := creds.auth, creds.endpoint
	// Without re-authentication a token that expires mid-rollout ends the
	// rollout with 401s.
	ao.AllowReauth = true

	obs := &observer{hook: opts.OnRequest}
	hc := newHTTPClient(opts.Retry, creds.tls, log, obs)
	// The provider is built by hand rather than by config.NewProviderClient
	// so that the token request, too, names Phoenix in its User-Agent.
	provider, err := openstack.NewClient(ao.IdentityEndpoint)
	if err == nil {
		provider.HTTPClient = *hc
		provider.UserAgent.Prepend(userAgent(opts)...)
		err = openstack.Authenticate(ctx, provider, ao)
	}
	if err != nil {
		wrapped := fmt.Errorf("authenticate with %s at %s: %w", creds.source, ao.IdentityEndpoint, redact(err))
		if refused(err) {
			// Keystone said no to what was sent: the same request
			// would get the same answer.
			return nil, &ConfigError{Err: wrapped}
		}
		return nil, wrapped
	}

	compute, err := openstack.NewComputeV2(provider, eo)
	if err != nil {
		return nil, notInCatalog("compute (Nova)", eo, err)
	}
	c, err := utils.RequireMicroversion(ctx, *compute, ComputeMicroversion)
	if err != nil {
		return nil, fmt.Errorf("compute endpoint %s: Phoenix needs Nova microversion %s (server tags in the create call): %w",
			compute.Endpoint, ComputeMicroversion, err)
	}
	compute = &c

	image, err := openstack.NewImageV2(provider, eo)
	if err != nil {
		return nil, notInCatalog("image (Glance)", eo, err)
	}
	if opts.LBWait == (LBWait{}) {
		opts.LBWait = DefaultLBWait()
	}
	cl := &Cloud{compute: compute, image: image, pageSize: opts.PageSize, lbWait: opts.LBWait, log: log}
	// gophercloud hands back a client with an empty endpoint along with
	// the error: only a client without an error is kept, so that a cloud
	// without Neutron or Octavia is told as such.
	// Only a service missing from the catalog is absent: any other error
	// (its version discovery answered 500) fails the connect, to be tried
	// again, rather than leave the service off for the process's life.
	if nc, err := openstack.NewNetworkV2(provider, eo); !absent(err) {
		return nil, fmt.Errorf("reach the network (Neutron) endpoint: %w", err)
	} else if err != nil {
		cl.netErr = err
	} else {
		cl.network = nc
	}
	if lc, err := openstack.NewLoadBalancerV2(provider, eo); !absent(err) {
		return nil, fmt.Errorf("reach the load-balancer (Octavia) endpoint: %w", err)
	} else if err != nil {
		cl.lbErr = err
	} else {
		cl.lb = lc
	}
	// Without Cinder a cloud still serves every group without volumes:
	// the error is kept for the first volume call to report.
	if vc, err := openstack.NewBlockStorageV3(provider, eo); !absent(err) {
		return nil, fmt.Errorf("reach the block-storage (Cinder) endpoint: %w", err)
	} else if err != nil {
		cl.volErr = err
	} else {
		vc.Microversion = VolumeMicroversion
		cl.volume = vc
	}
	eps := []serviceEndpoint{{ao.IdentityEndpoint, "identity"}, {compute.Endpoint, "compute"}, {image.Endpoint, "image"}}
	if cl.network != nil {
		eps = append(eps, serviceEndpoint{cl.network.Endpoint, "network"})
	}
	if cl.lb != nil {
		eps = append(eps, serviceEndpoint{cl.lb.Endpoint, "load-balancer"})
	}
	if cl.volume != nil {
		eps = append(eps, serviceEndpoint{cl.volume.Endpoint, "block-storage"})
	}
	obs.setEndpoints(eps)
	return cl, nil
}

// userAgent is what goes before gophercloud's own token: the replica, if
// any, then phoenix/VERSION.
func userAgent(opts Options) []string {
	product := "phoenix"
	if opts.Version != "" {
		product += "/" + opts.Version
	}
	if opts.UserAgent != "" {
		return []string{opts.UserAgent, product}
	}
	return []string{product}
}

// Services returns the cloud's clients, one per service. A service
// missing from the catalog (Neutron, Octavia, Cinder) is an Absent client
// carrying the reason, so that a group asking for it is refused before
// anything is done.
func (c *Cloud) Services() provisioner.Cloud {
	s := provisioner.Cloud{Servers: c, Images: c, LoadBalancer: c, FloatingIPs: c, Snapshots: c, Volumes: c, ServerActions: c}
	if c.network == nil {
		s.FloatingIPs = provisioner.Absent{Service: "Neutron (network)",
			Err: fmt.Errorf("no network endpoint in the catalog: %w", c.netErr)}
	}
	if c.lb == nil {
		s.LoadBalancer = provisioner.Absent{Service: "Octavia (load balancer)",
			Err: fmt.Errorf("no load-balancer endpoint in the catalog: %w", c.lbErr)}
	}
	if c.volume == nil {
		s.Volumes = provisioner.Absent{Service: "Cinder (block storage)",
			Err: fmt.Errorf("no block-storage endpoint (catalog type volumev3) in the catalog: %w", c.volErr)}
	}
	return s
}

// absent says whether creating a service client failed because the
// catalog has no such service (or did not fail at all).
func absent(err error) bool {
	var nf *gophercloud.ErrEndpointNotFound
	var nfv gophercloud.ErrEndpointNotFound
	return err == nil || errors.As(err, &nf) || errors.As(err, &nfv)
}

// redact keeps gophercloud's authentication errors from echoing a request
// body; gophercloud's messages name URLs and status codes, which is what an
// operator needs, so only unexpected-code errors are reduced to those.
func redact(err error) error {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return fmt.Errorf("HTTP %d from %s %s: %s", code.Actual, code.Method, code.URL, cloudMessage(code.Body))
	}
	return err
}

// refused says whether Keystone answered the token request with 400 or
// 401: credentials that are wrong, or a request built from incomplete ones.
func refused(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) || gophercloud.ResponseCodeIs(err, http.StatusBadRequest)
}

// notInCatalog explains a service Phoenix needs that the token's catalog
// lacks: most often a region or interface that is not the cloud's, or a
// token scoped to no project. It is a ConfigError then.
func notInCatalog(service string, eo gophercloud.EndpointOpts, err error) error {
	err = fmt.Errorf("find the %s endpoint in the catalog: %w", service, err)
	if !absent(err) {
		return err
	}
	iface := cmp.Or(string(eo.Availability), "public")
	return &ConfigError{Err: fmt.Errorf("%w (region %q, interface %s): check OS_REGION_NAME or region_name, OS_INTERFACE or interface, and that a project is named (OS_PROJECT_NAME, OS_PROJECT_ID)", err, eo.Region, iface)}
}
