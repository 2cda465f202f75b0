package config

import (
	"net"
	"slices"
	"strings"
)

// maxMemberWeight is Octavia's largest member weight.
const maxMemberWeight = 256

func (v *validator) traffic(g *Group, path string) {
	o, f := g.Traffic.Octavia, g.Traffic.FloatingIP
	if o != nil && f != nil {
		v.badFrom(path, []string{path + ".octavia", path + ".floating_ip"}, "octavia and floating_ip are alternatives: a floating IP serves one server, a pool serves many; configure one")
		return
	}
	onNetwork := func(network, at string) {
		if network != "" && len(g.Networks) > 0 && !slices.Contains(g.Networks, network) {
			v.badFrom(at, []string{at, strings.TrimSuffix(path, ".traffic") + ".networks"},
				"expected one of the group's networks (%s), got %q: the address a server has there is where traffic is sent",
				strings.Join(g.Networks, ", "), network)
		}
	}
	if o != nil {
		at := path + ".octavia"
		if strings.TrimSpace(o.Pool) == "" {
			v.bad(at+".pool", "a pool name or ID is required")
		}
		v.port(o.ProtocolPort, at+".protocol_port")
		if o.Weight < 1 || o.Weight > maxMemberWeight {
			v.bad(at+".weight", "expected a weight from 1 to %d (weight 0 is Phoenix's drain and would never send traffic), got %d", maxMemberWeight, o.Weight)
		}
		onNetwork(o.Network, at+".network")
	}
	if f != nil {
		at := path + ".floating_ip"
		switch {
		case f.Address != "" && f.Pool != "":
			v.bad(at, "address and pool are alternatives: name the floating IP to move, or the external network to allocate one from")
		case f.Address == "" && f.Pool == "":
			v.bad(at, "expected an address (an existing floating IP) or a pool (an external network to allocate one from)")
		case f.Address != "":
			if ip := net.ParseIP(f.Address); ip == nil {
				v.bad(at+".address", "expected an IP address, got %q", f.Address)
			}
		}
		if g.Count > 1 {
			v.badFrom(at, []string{at, strings.TrimSuffix(path, ".traffic") + ".count"},
				"a floating IP points at one server, and this group has count %d: put the servers behind traffic.octavia instead, or set count: 1", g.Count)
		}
		onNetwork(f.Network, at+".network")
	}
}
