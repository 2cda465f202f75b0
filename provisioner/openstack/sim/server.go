package sim

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Health is what a server's application answers to health checks.
type Health int

const (
	// HealthUp answers HTTP 200 and accepts TCP connections.
	HealthUp Health = iota
	// HealthFailing answers HTTP 503 (TCP connections still open).
	HealthFailing
	// HealthDown closes the listeners: connections are refused.
	HealthDown
)

// Server is a simulated server as the tests see it.
type Server struct {
	ID, Name, Status, TaskState, ImageID, FlavorID, AvailabilityZone, KeyName string

	Tags     []string
	Metadata map[string]string
	// Address is the server's one fixed IPv4 address (127.x.y.z).
	Address string
	// Network is the name of the network it is on.
	Network           string
	Created, ActiveAt time.Time
	// BootTime and HealthDelay are the durations drawn for this server.
	BootTime, HealthDelay time.Duration
	// Healthy: ACTIVE, application up, health HealthUp, not being deleted.
	Healthy bool
	// Deleting: a delete was accepted and the server is not gone yet.
	Deleting bool
}

type server struct {
	id, name              string
	status                string
	vmState, taskState    string
	powerState            int
	imageID, flavorID     string
	network, networkID    string
	address               string
	az, keyName           string
	secGroups             []string
	metadata              map[string]string
	tags                  []string
	userData              string
	created, updated      time.Time
	launchedAt, activeAt  time.Time
	fault                 string
	faultAt               time.Time
	bootTime, healthDelay time.Duration
	health                Health
	deleting              bool
	description           string
	serverGroup           string
	seq                   uint64
	app                   *app // the health listeners; nil when nothing listens
	appUp                 bool // the application has started (HealthDelay passed)
	appMu                 sync.Mutex
	appWanted             bool
	ports                 []int
}

func (srv *server) view() Server {
	return Server{
		ID: srv.id, Name: srv.name, Status: srv.status, TaskState: srv.taskState,
		ImageID: srv.imageID, FlavorID: srv.flavorID, AvailabilityZone: srv.az, KeyName: srv.keyName,
		Tags: slices.Clone(srv.tags), Metadata: maps.Clone(srv.metadata),
		Address: srv.address, Network: srv.network,
		Created: srv.created, ActiveAt: srv.activeAt,
		BootTime: srv.bootTime, HealthDelay: srv.healthDelay,
		Healthy:  srv.status == "ACTIVE" && srv.appUp && srv.health == HealthUp && !srv.deleting,
		Deleting: srv.deleting,
	}
}
