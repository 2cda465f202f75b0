package sim

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

var (
	reSubnet     = regexp.MustCompile(`^/v2\.0/subnets/([^/]+)$`)
	rePort       = regexp.MustCompile(`^/v2\.0/ports/([^/]+)$`)
	reFloatingIP = regexp.MustCompile(`^/v2\.0/floatingips/([^/]+)$`)
)

// subnet is a network's one subnet.
type subnet struct {
	ID, Name, NetworkID, CIDR string
}

// subnetByID finds a subnet. Call with s.mu held.
func (s *Sim) subnetByID(id string) (subnet, bool) {
	for _, sn := range s.subnets {
		if sn.ID == id {
			return sn, true
		}
	}
	return subnet{}, false
}

// subnetByName finds a subnet. Call with s.mu held.
func (s *Sim) subnetByName(name string) (subnet, bool) {
	for _, sn := range s.subnets {
		if sn.Name == name {
			return sn, true
		}
	}
	return subnet{}, false
}

// subnetOf is the subnet of a network ("" for none). Call with s.mu held.
func (s *Sim) subnetOf(networkID string) string {
	for _, sn := range s.subnets {
		if sn.NetworkID == networkID {
			return sn.ID
		}
	}
	return ""
}

func (s *Sim) subnetJSON(sn subnet) map[string]any {
	return map[string]any{
		"id": sn.ID, "name": sn.Name, "network_id": sn.NetworkID, "tenant_id": s.projectID, "project_id": s.projectID,
		"ip_version": 4, "cidr": sn.CIDR, "gateway_ip": nil, "enable_dhcp": true,
		"allocation_pools": []any{map[string]any{"start": "127.0.0.2", "end": "127.255.255.254"}},
		"host_routes":      []any{}, "dns_nameservers": []string{}, "service_types": []string{},
		"ipv6_address_mode": nil, "ipv6_ra_mode": nil, "subnetpool_id": nil, "segment_id": nil,
		"description": "", "tags": []string{}, "revision_number": 0,
		"created_at": networkEpoch, "updated_at": networkEpoch,
	}
}

// serveSubnets answers GET /v2.0/subnets and /v2.0/subnets/{id}.
func (s *Sim) serveSubnets(w http.ResponseWriter, r *http.Request, sub string) {
	s.mu.Lock()
	all := slices.Clone(s.subnets)
	s.mu.Unlock()
	if m := reSubnet.FindStringSubmatch(sub); m != nil {
		for _, sn := range all {
			if sn.ID == m[1] {
				writeJSON(w, http.StatusOK, map[string]any{"subnet": s.subnetJSON(sn)})
				return
			}
		}
		neutronError(w, http.StatusNotFound, "SubnetNotFound", "Subnet "+m[1]+" could not be found.")
		return
	}
	list := []any{}
	for _, sn := range all {
		if doc := s.subnetJSON(sn); matchQuery(doc, r.URL.Query()) {
			list = append(list, doc)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subnets": list})
}

// portJSON is a server's port as Neutron shows it. Call with s.mu held.
func (s *Sim) portJSON(srv *server) map[string]any {
	status := "DOWN" // until the instance runs, as Neutron's agents report
	if srv.status == "ACTIVE" {
		status = "ACTIVE"
	}
	sgs := make([]string, len(srv.secGroups))
	for i, n := range srv.secGroups {
		sgs[i] = securityGroupID(n)
	}
	return map[string]any{
		"id": srv.portID, "name": "", "network_id": srv.network.ID, "tenant_id": s.projectID, "project_id": s.projectID,
		"mac_address": srv.mac, "admin_state_up": true, "status": status,
		"device_id": srv.id, "device_owner": "compute:" + srv.az,
		"fixed_ips":             []any{map[string]any{"subnet_id": s.subnetOf(srv.network.ID), "ip_address": srv.address}},
		"allowed_address_pairs": []any{}, "extra_dhcp_opts": []any{}, "security_groups": sgs,
		"description": "", "binding:vnic_type": "normal", "port_security_enabled": true,
		"qos_policy_id": nil, "qos_network_policy_id": nil, "propagate_uplink_status": false,
		"dns_name": "", "tags": []string{}, "revision_number": 1,
		"created_at": srv.created.Format(novaTime), "updated_at": srv.updated.Format(novaTime),
	}
}

// servePorts answers GET /v2.0/ports and /v2.0/ports/{id}: one port per
// server on a network, gone with the server.
func (s *Sim) servePorts(w http.ResponseWriter, r *http.Request, sub string) {
	if m := rePort.FindStringSubmatch(sub); m != nil {
		s.mu.Lock()
		srv, ok := s.ports[m[1]]
		var doc map[string]any
		if ok {
			doc = s.portJSON(srv)
		}
		s.mu.Unlock()
		if !ok {
			neutronError(w, http.StatusNotFound, "PortNotFound", "Port "+m[1]+" could not be found.")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"port": doc})
		return
	}
	q := r.URL.Query()
	fixed := q["fixed_ips"]
	q.Del("fixed_ips")
	list := []any{}
	s.mu.Lock()
	for _, srv := range s.order {
		if srv.portID == "" {
			continue
		}
		doc := s.portJSON(srv)
		if matchQuery(doc, q) && matchFixedIPs(fixed, srv.address, s.subnetOf(srv.network.ID)) {
			list = append(list, doc)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"ports": list})
}

// matchFixedIPs applies Neutron's fixed_ips filters ("ip_address=A",
// "subnet_id=S"): each one must hold.
func matchFixedIPs(filters []string, address, subnetID string) bool {
	for _, f := range filters {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "ip_address":
			if v != address {
				return false
			}
		case "subnet_id":
			if v != subnetID {
				return false
			}
		}
	}
	return true
}

// floatingIP is a floating IP: a loopback address of its own whose every
// health port forwards to the server of the port it is associated with.
type floatingIP struct {
	id, address, networkID, portID, description string
	created, updated                            time.Time
	revision                                    int
	proxy                                       *proxy
}

// FloatingIP is a floating IP as tests see it.
type FloatingIP struct {
	ID, Address string
	// PortID and FixedIP are those of the port it is associated with, ""
	// when it is not.
	PortID, FixedIP string
	Description     string
}

// floatingIPJSON is a floating IP as Neutron shows it. Call with s.mu held.
func (s *Sim) floatingIPJSON(f *floatingIP) map[string]any {
	var portID, fixed any
	status := "DOWN"
	if srv, ok := s.ports[f.portID]; ok && f.portID != "" {
		portID, fixed, status = f.portID, srv.address, "ACTIVE"
	}
	return map[string]any{
		"id": f.id, "floating_ip_address": f.address, "floating_network_id": f.networkID,
		"port_id": portID, "fixed_ip_address": fixed, "status": status, "router_id": nil,
		"description": f.description, "tenant_id": s.projectID, "project_id": s.projectID,
		"qos_policy_id": nil, "port_forwardings": []any{}, "tags": []string{}, "revision_number": f.revision,
		"created_at": f.created.Format(novaTime), "updated_at": f.updated.Format(novaTime),
	}
}

func (s *Sim) floatingIPByID(id string) *floatingIP {
	for _, f := range s.fips {
		if f.id == id {
			return f
		}
	}
	return nil
}

// portGone disassociates the floating IPs of a port that is deleted, as
// Neutron does. Call with s.mu held.
func (s *Sim) portGone(portID string) {
	for _, f := range s.fips {
		if f.portID == portID {
			f.portID, f.updated = "", time.Now().UTC()
			f.revision++
		}
	}
}

// associable checks that a port may take a floating IP: it exists and has
// none yet (other than self). Call with s.mu held.
func (s *Sim) associable(self *floatingIP, portID, fixed string) (int, string, string) {
	srv, ok := s.ports[portID]
	if !ok {
		return http.StatusNotFound, "PortNotFound", "Port " + portID + " could not be found."
	}
	if fixed != "" && fixed != srv.address {
		return http.StatusBadRequest, "BadRequest", fmt.Sprintf("Bad floatingip request: Port %s does not have fixed ip %s.", portID, fixed)
	}
	for _, f := range s.fips {
		if f != self && f.portID == portID {
			return http.StatusConflict, "FloatingIPPortAlreadyAssociated", fmt.Sprintf(
				"Cannot associate floating IP %s (%s) with port %s using fixed IP %s, as that fixed IP already has a floating IP on external network %s.",
				f.address, f.id, portID, srv.address, f.networkID)
		}
	}
	return 0, "", ""
}

// allocFloatingIP allocates a floating IP on an external network and
// opens its listeners. Call with s.mu held.
func (s *Sim) allocFloatingIP(networkID, description, portID string) (*floatingIP, error) {
	if s.closed {
		return nil, fmt.Errorf("sim: closed")
	}
	address, err := allocAddress(s.opts.HealthPorts)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	f := &floatingIP{id: uuid.NewString(), address: address, networkID: networkID, portID: portID,
		description: description, created: now, updated: now, revision: 0}
	addrs := make([]string, len(s.opts.HealthPorts))
	for i, p := range s.opts.HealthPorts {
		addrs[i] = net.JoinHostPort(address, fmt.Sprint(p))
	}
	if f.proxy, err = startProxy(addrs, s.floatingIPHandler(f)); err != nil {
		return nil, err
	}
	s.fips = append(s.fips, f)
	return f, nil
}

// floatingIPHandler forwards a request that reached a floating IP to the
// same port of the server it is associated with now.
func (s *Sim) floatingIPHandler(f *floatingIP) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, port, _ := net.SplitHostPort(localAddr(r))
		target := ""
		s.mu.Lock()
		if srv, ok := s.ports[f.portID]; ok && f.portID != "" {
			target = net.JoinHostPort(srv.address, port)
		}
		s.mu.Unlock()
		if target == "" {
			http.Error(w, "floating IP "+f.address+" is not associated with a port", http.StatusBadGateway)
			return
		}
		s.forward(w, r, target)
	})
}

func (s *Sim) listFloatingIPs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list := []any{}
	s.mu.Lock()
	for _, f := range s.fips {
		if doc := s.floatingIPJSON(f); matchQuery(doc, q) {
			list = append(list, doc)
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"floatingips": list})
}

type floatingIPBody struct {
	FloatingNetworkID string  `json:"floating_network_id"`
	PortID            *string `json:"port_id"`
	FixedIP           string  `json:"fixed_ip_address"`
	Description       *string `json:"description"`
	FloatingIP        string  `json:"floating_ip_address"`
	SubnetID          string  `json:"subnet_id"`
	ProjectID         string  `json:"project_id"`
	TenantID          string  `json:"tenant_id"`
}

// readFloatingIP reads {"floatingip": {...}} and which keys it holds.
func readFloatingIP(r *http.Request) (floatingIPBody, map[string]json.RawMessage, string) {
	var env struct {
		FloatingIP json.RawMessage `json:"floatingip"`
	}
	var body floatingIPBody
	keys := map[string]json.RawMessage{}
	if err := decodeJSON(r, &env); err != nil || len(env.FloatingIP) == 0 {
		return body, nil, "Failed to parse request. Resource body floatingip is required."
	}
	if err := json.Unmarshal(env.FloatingIP, &keys); err != nil {
		return body, nil, "Failed to parse request: " + err.Error()
	}
	if err := json.Unmarshal(env.FloatingIP, &body); err != nil {
		return body, nil, "Invalid input for operation: " + err.Error()
	}
	return body, keys, ""
}

// createFloatingIP answers POST /v2.0/floatingips.
func (s *Sim) createFloatingIP(w http.ResponseWriter, r *http.Request) {
	body, _, msg := readFloatingIP(r)
	if msg != "" {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", msg)
		return
	}
	if body.FloatingNetworkID == "" {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Failed to parse request. Required attribute 'floating_network_id' not specified")
		return
	}
	if body.FloatingIP != "" {
		neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "The simulator allocates floating IP addresses itself: floating_ip_address is not supported")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.network(body.FloatingNetworkID)
	if !ok {
		neutronError(w, http.StatusNotFound, "NetworkNotFound", "Network "+body.FloatingNetworkID+" could not be found.")
		return
	}
	if !n.External {
		neutronError(w, http.StatusBadRequest, "BadRequest", "Bad floatingip request: Network "+n.ID+" is not a valid external network.")
		return
	}
	portID := ""
	if body.PortID != nil && *body.PortID != "" {
		portID = *body.PortID
		if status, typ, msg := s.associable(nil, portID, body.FixedIP); status != 0 {
			neutronError(w, status, typ, msg)
			return
		}
	}
	desc := ""
	if body.Description != nil {
		desc = *body.Description
	}
	f, err := s.allocFloatingIP(n.ID, desc, portID)
	if err != nil {
		neutronError(w, http.StatusServiceUnavailable, "IpAddressGenerationFailure", "No more IP addresses available on network "+n.ID+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"floatingip": s.floatingIPJSON(f)})
}

// serveFloatingIP answers GET, PUT and DELETE of /v2.0/floatingips/{id}.
func (s *Sim) serveFloatingIP(w http.ResponseWriter, r *http.Request, id string) {
	notFound := func() {
		neutronError(w, http.StatusNotFound, "FloatingIPNotFound", "Floating IP "+id+" could not be found")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		defer s.mu.Unlock()
		f := s.floatingIPByID(id)
		if f == nil {
			notFound()
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"floatingip": s.floatingIPJSON(f)})
	case http.MethodPut:
		body, keys, msg := readFloatingIP(r)
		if msg != "" {
			neutronError(w, http.StatusBadRequest, "HTTPBadRequest", msg)
			return
		}
		for k := range keys {
			switch k {
			case "port_id", "fixed_ip_address", "description":
			default:
				neutronError(w, http.StatusBadRequest, "HTTPBadRequest", "Cannot update read-only attribute "+k)
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		f := s.floatingIPByID(id)
		if f == nil {
			notFound()
			return
		}
		if _, ok := keys["port_id"]; ok {
			portID := ""
			if body.PortID != nil {
				portID = *body.PortID
			}
			if portID != "" {
				if status, typ, msg := s.associable(f, portID, body.FixedIP); status != 0 {
					neutronError(w, status, typ, msg)
					return
				}
			}
			f.portID = portID
		}
		if body.Description != nil {
			f.description = *body.Description
		}
		f.updated = time.Now().UTC()
		f.revision++
		writeJSON(w, http.StatusOK, map[string]any{"floatingip": s.floatingIPJSON(f)})
	case http.MethodDelete:
		s.mu.Lock()
		f := s.floatingIPByID(id)
		if f != nil {
			s.fips = slices.DeleteFunc(s.fips, func(x *floatingIP) bool { return x == f })
		}
		s.mu.Unlock()
		if f == nil {
			notFound()
			return
		}
		f.proxy.stop()
		w.WriteHeader(http.StatusNoContent)
	default:
		neutronError(w, http.StatusMethodNotAllowed, "HTTPMethodNotAllowed", "The method is not allowed for this resource.")
	}
}

// AddFloatingIP allocates a floating IP on the external network "public",
// associated with nothing, as `openstack floating ip create public` would.
func (s *Sim) AddFloatingIP(description string) (FloatingIP, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var public *Network
	for i, n := range s.networks {
		if n.Name == "public" && n.External {
			public = &s.networks[i]
			break
		}
	}
	if public == nil {
		return FloatingIP{}, fmt.Errorf("sim: no external network named public")
	}
	f, err := s.allocFloatingIP(public.ID, description, "")
	if err != nil {
		return FloatingIP{}, fmt.Errorf("sim: allocate a floating IP: %w", err)
	}
	return s.floatingIPView(f), nil
}

// FloatingIPs returns every floating IP, in allocation order.
func (s *Sim) FloatingIPs() []FloatingIP {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FloatingIP, len(s.fips))
	for i, f := range s.fips {
		out[i] = s.floatingIPView(f)
	}
	return out
}

// floatingIPView: call with s.mu held.
func (s *Sim) floatingIPView(f *floatingIP) FloatingIP {
	v := FloatingIP{ID: f.id, Address: f.address, Description: f.description}
	if srv, ok := s.ports[f.portID]; ok && f.portID != "" {
		v.PortID, v.FixedIP = f.portID, srv.address
	}
	return v
}
