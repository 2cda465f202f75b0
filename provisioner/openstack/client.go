package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
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
	Retry      RetryPolicy
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

	ao, eo, tlsConfig, source, err := authOptions(opts)
	if err != nil {
		return nil, err
	}
	// clouds.Parse does not carry allow_reauth over; without it a token
	// that expires mid-rollout ends the rollout with 401s.
	ao.AllowReauth = true

	obs := &observer{hook: opts.OnRequest}
	hc := newHTTPClient(opts.Retry, tlsConfig, log, obs)
	provider, err := config.NewProviderClient(ctx, ao, config.WithHTTPClient(*hc))
	if err != nil {
		return nil, fmt.Errorf("authenticate with %s at %s: %w", source, ao.IdentityEndpoint, redact(err))
	}
	provider.UserAgent.Prepend("phoenix")
	if opts.UserAgent != "" {
		provider.UserAgent.Prepend(opts.UserAgent)
	}

	compute, err := openstack.NewComputeV2(provider, eo)
	if err != nil {
		return nil, fmt.Errorf("find the compute (Nova) endpoint in the catalog: %w", err)
	}
	c, err := utils.RequireMicroversion(ctx, *compute, ComputeMicroversion)
	if err != nil {
		return nil, fmt.Errorf("compute endpoint %s: Phoenix needs Nova microversion %s (server tags in the create call): %w",
			compute.Endpoint, ComputeMicroversion, err)
	}
	compute = &c

	image, err := openstack.NewImageV2(provider, eo)
	if err != nil {
		return nil, fmt.Errorf("find the image (Glance) endpoint in the catalog: %w", err)
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

// authOptions reads credentials the way the OpenStack CLI does: a
// clouds.yaml entry when a cloud is named (by option or OS_CLOUD), the OS_*
// variables otherwise. source names where they came from for messages.
func authOptions(opts Options) (gophercloud.AuthOptions, gophercloud.EndpointOpts, *tls.Config, string, error) {
	name := opts.Cloud
	if name == "" {
		name = os.Getenv("OS_CLOUD")
	}
	if name != "" {
		parse := []clouds.ParseOption{clouds.WithCloudName(name)}
		if opts.CloudsFile != "" {
			parse = append(parse, clouds.WithLocations(opts.CloudsFile))
		}
		ao, eo, tlsConfig, err := clouds.Parse(parse...)
		if err != nil {
			return ao, eo, nil, "", fmt.Errorf("read cloud %q from clouds.yaml: %w", name, err)
		}
		return ao, eo, tlsConfig, fmt.Sprintf("cloud %q", name), nil
	}
	if os.Getenv("OS_AUTH_URL") == "" {
		return gophercloud.AuthOptions{}, gophercloud.EndpointOpts{}, nil, "",
			errors.New("no cloud credentials: set `cloud:` in the config, OS_CLOUD, or the OS_* variables (OS_AUTH_URL, ...)")
	}
	ao, err := openstack.AuthOptionsFromEnv()
	if err != nil {
		return ao, gophercloud.EndpointOpts{}, nil, "", fmt.Errorf("read OS_* variables: %w", err)
	}
	eo := gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME")}
	switch os.Getenv("OS_INTERFACE") {
	case "internal", "internalURL":
		eo.Availability = gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		eo.Availability = gophercloud.AvailabilityAdmin
	}
	var tlsConfig *tls.Config
	if path := os.Getenv("OS_CACERT"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return ao, eo, nil, "", fmt.Errorf("read OS_CACERT: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return ao, eo, nil, "", fmt.Errorf("OS_CACERT %s holds no PEM certificate", path)
		}
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return ao, eo, tlsConfig, "the OS_* variables", nil
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
