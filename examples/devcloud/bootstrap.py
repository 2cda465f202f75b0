#!/usr/bin/python3
"""Create what the development cloud needs, idempotently, through the APIs.

  bootstrap.py identity   projects, users, roles, services and endpoints
  bootstrap.py network    wait until a just started neutron-server answers
                          port lists
  bootstrap.py resources  flavors, the 127.1.0.0/16 network, the floating-IP
                          pool phoenix-ext and its router, project phoenix's
                          Nova quota, a first image
  bootstrap.py compute nova-compute=EPOCH ...
  bootstrap.py volume cinder-volume=EPOCH ...
                          wait until each named Nova or Cinder service has
                          reported in since its process started

Run by up.sh with DEVCLOUD_ADMIN_PW, DEVCLOUD_SERVICE_PW and
DEVCLOUD_PHOENIX_PW set. Standard library only: it runs on Debian's python3
before anything else is configured. Each step looks before it creates, so a
second run changes nothing.
"""

import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

KEYSTONE = "http://127.0.0.1:5000/v3"
REGION = "RegionOne"
ENDPOINTS = {
    # type: (name, url)
    "image": ("glance", "http://127.0.0.1:9292"),
    "placement": ("placement", "http://127.0.0.1:8778"),
    "compute": ("nova", "http://127.0.0.1:8774/v2.1"),
    "network": ("neutron", "http://127.0.0.1:9696"),
    "load-balancer": ("octavia", "http://127.0.0.1:9876"),
    # Nova finds Cinder by this type; Keystone fills in the project.
    "volumev3": ("cinderv3", "http://127.0.0.1:8776/v3/%(project_id)s"),
}
SERVICE_USERS = ["glance", "placement", "nova", "neutron", "octavia", "cinder"]
FLAVORS = [("1", "m1.tiny", 1, 512, 1), ("2", "m1.small", 1, 2048, 20), ("3", "m1.medium", 2, 4096, 40)]
QUOTA_PROJECT = "phoenix-quota"
# Project phoenix's own Nova quota (nova.conf's defaults stay for the
# others): room for ~8 tests at once of up to ~8 servers each, m1.medium
# included. Set through the API: a change of nova.conf restarts Nova.
PHOENIX_NOVA_QUOTA = {"instances": 200, "cores": 400, "ram": 819200}
# The floating-IP pool: an external flat network on a physical network of
# its own, a TEST-NET-2 subnet, and a router from it to phoenix-subnet.
EXT_NET, EXT_PHYSNET, EXT_SUBNET, EXT_CIDR = "phoenix-ext", "devcloud-ext", "phoenix-ext-subnet", "198.51.100.0/24"
ROUTER, ROUTER_PORT, ROUTER_PORT_IP = "phoenix-router", "phoenix-router-port", "127.1.0.2"


def say(msg):
    print("bootstrap:", msg, flush=True)


class Client:
    def __init__(self, password):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }}
        status, headers, parsed = self.call("POST", KEYSTONE + "/auth/tokens", body, token=None)
        if status != 201:
            raise SystemExit("admin login failed: HTTP %d" % status)
        self.token = headers["X-Subject-Token"]
        self.project_id = parsed["token"]["project"]["id"]

    def call(self, method, url, body=None, token="", raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if token is None:
            pass
        else:
            req.add_header("X-Auth-Token", token or self.token)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read()
                return resp.status, resp.headers, json.loads(text) if text.strip().startswith(b"{") else None
        except urllib.error.HTTPError as err:
            text = err.read()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text.decode(errors="replace")
            return err.code, err.headers, parsed

    def ok(self, method, url, body=None, expect=(200, 201, 202, 204), **kw):
        status, _, parsed = self.call(method, url, body, **kw)
        if status not in expect:
            raise SystemExit("%s %s: HTTP %d: %s" % (method, url, status, parsed))
        return parsed

    def find(self, url, key, **filters):
        query = urllib.parse.urlencode(filters)
        return self.ok("GET", url + ("?" + query if query else ""))[key]


def identity(c):
    def one(kind, **filters):
        found = c.find(KEYSTONE + "/" + kind, kind, **filters)
        return found[0] if found else None

    def project(name):
        p = one("projects", name=name)
        if not p:
            say("project " + name)
            p = c.ok("POST", KEYSTONE + "/projects", {"project": {"name": name, "domain_id": "default"}})["project"]
        return p["id"]

    roles = {}  # name -> id: a Keystone call takes up to 2 s on a busy machine

    def role(name):
        if name in roles:
            return roles[name]
        r = one("roles", name=name)
        if not r:
            say("role " + name)
            r = c.ok("POST", KEYSTONE + "/roles", {"role": {"name": name}})["role"]
        roles[name] = r["id"]
        return r["id"]

    def user(name, password, project_id, roles, more=()):
        u = one("users", name=name)
        if not u:
            say("user " + name)
            u = c.ok("POST", KEYSTONE + "/users", {"user": {
                "name": name, "password": password, "domain_id": "default", "default_project_id": project_id}})["user"]
        elif not can_login(c, name, password):
            # Set only when it differs: a change revokes the user's tokens.
            say("password of " + name)
            c.ok("PATCH", KEYSTONE + "/users/" + u["id"], {"user": {"password": password}})
        for pid in (project_id,) + tuple(more):
            for r in roles:
                # PUT is idempotent; the Debian openstack client cannot do this.
                c.ok("PUT", "%s/projects/%s/users/%s/roles/%s" % (KEYSTONE, pid, u["id"], role(r)))

    service_project = project("service")
    phoenix_project = project("phoenix")
    # A project of its own for a test that fills the instance quota, so
    # that tests running beside it in project phoenix are not refused.
    quota_project = project(QUOTA_PROJECT)
    for r in ("member", "reader", "load-balancer_member"):
        role(r)
    for name in SERVICE_USERS:
        user(name, os.environ["DEVCLOUD_SERVICE_PW"], service_project, ["admin"])
    user("phoenix", os.environ["DEVCLOUD_PHOENIX_PW"], phoenix_project, ["member", "load-balancer_member"],
         more=[quota_project])

    for stype, (name, url) in ENDPOINTS.items():
        s = one("services", type=stype)
        if not s:
            say("service " + stype)
            s = c.ok("POST", KEYSTONE + "/services", {"service": {"type": stype, "name": name}})["service"]
        have = {e["interface"]: e for e in c.find(KEYSTONE + "/endpoints", "endpoints", service_id=s["id"])}
        for iface in ("public", "internal", "admin"):
            e = have.get(iface)
            if e and e["url"] == url:
                continue
            if e:
                c.ok("DELETE", KEYSTONE + "/endpoints/" + e["id"])
            c.ok("POST", KEYSTONE + "/endpoints", {"endpoint": {
                "service_id": s["id"], "interface": iface, "url": url, "region_id": REGION}})


def can_login(c, name, password):
    status, _, _ = c.call("POST", KEYSTONE + "/auth/tokens", {"auth": {"identity": {
        "methods": ["password"],
        "password": {"user": {"name": name, "domain": {"name": "Default"}, "password": password}}}}}, token=None)
    return status == 201


def resources(c):
    nova = ENDPOINTS["compute"][1]
    flavors = {f["name"] for f in c.find(nova + "/flavors", "flavors", is_public="None")}
    for fid, name, vcpus, ram, disk in FLAVORS:
        if name not in flavors:
            say("flavor " + name)
            c.ok("POST", nova + "/flavors", {"flavor": {
                "id": fid, "name": name, "vcpus": vcpus, "ram": ram, "disk": disk, "os-flavor-access:is_public": True}})

    neutron = ENDPOINTS["network"][1] + "/v2.0"
    nets = c.find(neutron + "/networks", "networks", name="phoenix-net")
    if nets:
        net = nets[0]
    else:
        say("network phoenix-net")
        net = c.ok("POST", neutron + "/networks", {"network": {
            "name": "phoenix-net", "shared": True,
            "provider:network_type": "flat", "provider:physical_network": "devcloud"}})["network"]
    if not c.find(neutron + "/subnets", "subnets", network_id=net["id"]):
        say("subnet 127.1.0.0/16")
        # Loopback addresses: a process on this machine listening on
        # 0.0.0.0 answers for every fake server (the health responder).
        c.ok("POST", neutron + "/subnets", {"subnet": {
            "network_id": net["id"], "name": "phoenix-subnet", "ip_version": 4, "cidr": "127.1.0.0/16",
            "gateway_ip": None, "enable_dhcp": False,
            "allocation_pools": [{"start": "127.1.0.10", "end": "127.1.255.250"}]}})

    subnet = c.find(neutron + "/subnets", "subnets", network_id=net["id"])[0]
    floating_ips(c, neutron, net, subnet)
    nova_quota(c, nova, "phoenix", PHOENIX_NOVA_QUOTA)

    glance = ENDPOINTS["image"][1] + "/v2"
    if not c.find(glance + "/images", "images", name="devcloud-base"):
        say("image devcloud-base")
        img = c.ok("POST", glance + "/images", {
            "name": "devcloud-base", "disk_format": "qcow2", "container_format": "bare",
            "visibility": "public", "os_distro": "devcloud"})
        # The fake virt driver never reads it: a few bytes stand in for a disk.
        c.ok("PUT", glance + "/images/%s/file" % img["id"], raw=b"phoenix devcloud image\n" * 64,
             ctype="application/octet-stream")


def network(c):
    """Warm a just (re)started neutron-server (see warm_ports)."""
    warm_ports(c, ENDPOINTS["network"][1] + "/v2.0")


def warm_ports(c, neutron):
    """List networks, then ports until Neutron answers several times in a
    row.

    Just after neutron-server (re)starts with the L3 plugins, every port
    list fails (HTTP 500, "type object 'Port' has no attribute
    'port_forwardings'"), and Nova's server list with it, until SQLAlchemy
    has configured its mappers in that API worker: the port list reads
    that attribute (a backref made at configuration) before it queries,
    so port lists alone never configure them (seen: 120 failures in a
    row). Any other query does: a network list first.
    """
    ok, failed = 0, 0
    for _ in range(120):
        status, _, _ = c.call("GET", neutron + "/networks?limit=1")
        if status == 200:
            status, _, _ = c.call("GET", neutron + "/ports?limit=1")
        if status == 200:
            ok += 1
            if ok == 3:
                if failed:
                    say("neutron answered port lists after %d failures" % failed)
                return
        else:
            ok, failed = 0, failed + 1
            time.sleep(0.5)
    raise SystemExit("neutron kept failing port lists (%d failures)" % failed)


def floating_ips(c, neutron, net, subnet):
    """The floating-IP pool phoenix-ext and a router from it to
    phoenix-subnet. No L3 agent runs: nothing is routed, but Neutron
    allocates floating IPs and associates them with ports on phoenix-net.
    """
    exts = c.find(neutron + "/networks", "networks", name=EXT_NET)
    if exts:
        ext = exts[0]
    else:
        say("external network " + EXT_NET)
        ext = c.ok("POST", neutron + "/networks", {"network": {
            "name": EXT_NET, "router:external": True,
            "provider:network_type": "flat", "provider:physical_network": EXT_PHYSNET}})["network"]
    if not c.find(neutron + "/subnets", "subnets", network_id=ext["id"]):
        say("subnet %s %s" % (EXT_SUBNET, EXT_CIDR))
        # TEST-NET-2, documentation addresses: no DHCP (none runs).
        c.ok("POST", neutron + "/subnets", {"subnet": {
            "network_id": ext["id"], "name": EXT_SUBNET, "ip_version": 4, "cidr": EXT_CIDR,
            "enable_dhcp": False}})

    routers = c.find(neutron + "/routers", "routers", name=ROUTER)
    if routers:
        router = routers[0]
    else:
        say("router " + ROUTER)
        router = c.ok("POST", neutron + "/routers", {"router": {"name": ROUTER}})["router"]
    # The gateway after the external subnet exists, or it has no address.
    gw = router.get("external_gateway_info") or {}
    if gw.get("network_id") != ext["id"] or not gw.get("external_fixed_ips"):
        say("gateway of %s on %s" % (ROUTER, EXT_NET))
        c.ok("PUT", neutron + "/routers/" + router["id"], {"router": {
            "external_gateway_info": {"network_id": ext["id"]}}})

    # phoenix-subnet has no gateway address, so add_router_interface by
    # subnet is refused: attach the router through a port of its own, on
    # an address outside the allocation pool.
    ports = c.find(neutron + "/ports", "ports", name=ROUTER_PORT, network_id=net["id"])
    if ports:
        port = ports[0]
    else:
        say("port %s %s" % (ROUTER_PORT, ROUTER_PORT_IP))
        port = c.ok("POST", neutron + "/ports", {"port": {
            "name": ROUTER_PORT, "network_id": net["id"],
            "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": ROUTER_PORT_IP}]}})["port"]
    if port.get("device_id") != router["id"]:
        say("interface of %s on phoenix-subnet" % ROUTER)
        c.ok("PUT", neutron + "/routers/%s/add_router_interface" % router["id"], {"port_id": port["id"]})


def nova_quota(c, nova, project_name, want):
    """Set the project's own Nova quota where it differs."""
    pid = c.find(KEYSTONE + "/projects", "projects", name=project_name)[0]["id"]
    have = c.ok("GET", "%s/os-quota-sets/%s" % (nova, pid))["quota_set"]
    if any(have.get(k) != v for k, v in want.items()):
        say("nova quota of %s: %s" % (project_name, want))
        c.ok("PUT", "%s/os-quota-sets/%s" % (nova, pid), {"quota_set": want})


def compute(c, since):
    """Wait until nova-conductor, nova-scheduler and nova-compute have each
    reported in since their processes started (since: name -> epoch).

    A report from before a restart still counts as "up" for a minute, but
    a compute that has not yet bound its message queue loses the build
    cast sent to it: the server stays in BUILD for ever.
    """
    reported(c, ENDPOINTS["compute"][1] + "/os-services", since)


def volume(c, since):
    """Wait until cinder-scheduler and cinder-volume have each reported in
    since their processes started: until then a volume create can fail
    with "No valid backend was found".
    """
    cinder = ENDPOINTS["volumev3"][1] % {"project_id": c.project_id}
    reported(c, cinder + "/os-services", since)


def reported(c, url, since):
    for _ in range(240):
        services = c.find(url, "services")
        fresh = set()
        for s in services:
            updated = s.get("updated_at")
            if s["state"] != "up" or s["status"] != "enabled" or not updated:
                continue
            at = datetime.datetime.fromisoformat(updated).replace(tzinfo=datetime.timezone.utc).timestamp()
            if at >= since.get(s["binary"], 0):
                fresh.add(s["binary"])
        if fresh >= set(since):
            return
        time.sleep(0.5)
    raise SystemExit("services did not report in within 2 minutes: have %s" % sorted(fresh))


def main():
    phases = {"identity": identity, "network": network, "resources": resources, "compute": compute, "volume": volume}
    if len(sys.argv) < 2 or sys.argv[1] not in phases:
        raise SystemExit(__doc__)
    c = Client(os.environ["DEVCLOUD_ADMIN_PW"])
    if sys.argv[1] in ("compute", "volume"):
        # Arguments: binary=epoch ..., the start times of the processes.
        phases[sys.argv[1]](c, {k: float(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])})
    else:
        phases[sys.argv[1]](c)
    say(sys.argv[1] + " ready")


if __name__ == "__main__":
    main()
