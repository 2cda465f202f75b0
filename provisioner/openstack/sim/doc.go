// Package sim is an OpenStack API simulator: Keystone v3, Nova v2.1,
// Glance v2, the part of Neutron servers and floating IPs need, Octavia
// v2 and Cinder v3, served over real HTTP on loopback.
//
// It exists so that Phoenix's tests, demo and benchmarks run the very code
// that talks to a real cloud — gophercloud over HTTP, with its
// authentication, service catalog, pagination, microversion headers, error
// bodies and retries — rather than a fake of the provisioner interface,
// which would agree with whatever Phoenix believes. A fake written from
// Phoenix's own assumptions cannot catch a wrong assumption; a simulator
// that keeps the real services' rules can.
//
// What it models, as the real services do it:
//
//   - Keystone: password authentication scoped to the one project, a
//     token in X-Subject-Token with the full token body and a catalog
//     pointing back at the simulator (each region's listener), tokens
//     that expire (401, so clients re-authenticate).
//   - Nova: microversion negotiation (2.1 up to Options.MaxMicroversion,
//     406 above it) and server JSON shaped by the microversion asked for;
//     the strict create schema (unknown keys, tags before 2.52, networks
//     required from 2.37, metadata and tag limits); the instance quota
//     with Nova's exact message; the server life cycle BUILD → ACTIVE or
//     ERROR, with addresses hidden while building; delete that leaves the
//     server listed with task state "deleting" for a while; metadata and
//     tag changes refused (409) in the states Nova refuses them; and the
//     list traps: filters Nova does not know are ignored, the tag filters
//     are ignored below 2.26, results are newest first, and a full page
//     always carries a next link. Markers of deleted servers stay valid.
//     os-stop and os-start (task state powering-off/on, then SHUTOFF with
//     power state 4 or ACTIVE; 409 from any other state, as Nova words
//     it), pause/unpause and suspend/resume (PAUSED, SUSPENDED) the same
//     way, and rebuild (REBUILD, then ACTIVE — or SHUTOFF for a stopped
//     server — on the new image, same ID, address and volumes, metadata
//     replaced when the request has some). The server's application
//     does not answer while it is off or being rebuilt, and answers again
//     Options.HealthDelay after it is ACTIVE.
//   - Cinder (catalog type volumev3, /volume/v3/{project_id}; left out
//     with Options.NoVolumeService): volumes creating → available,
//     metadata merged by POST and replaced by PUT, lists filtered by
//     metadata (JSON or the Python literal gophercloud sends), snapshots
//     creating → available (force needed for a volume in use) with their
//     metadata filter from microversion 3.22, deletes through deleting to
//     gone. Wrong states answer as the development cloud's Cinder does:
//     400 "Invalid volume: …" (a volume in use or with snapshots deleted,
//     a volume in use snapshotted without force).
//   - Nova's os-volume_attachments: attach (the volume attaching →
//     in-use, its ID in the server's os-extended-volumes:volumes_attached
//     at once) and detach (detaching → available), the server ACTIVE or
//     SHUTOFF with no task, or 409. A volume attached to one server is
//     refused to every other with Nova's 400 "already attached to
//     instances"; a deleted server frees its volumes. Every attachment is
//     kept in AttachmentHistory (requested, attached, released) and every
//     refusal in RefusedAttachments, and CheckExclusiveAttachments says
//     whether a volume was ever held by two servers or offered to a
//     second one.
//   - Glance: images with custom properties as top-level keys, the list
//     filters (name, status, visibility, tag, owner, any property), sort
//     keys, limit/marker pages with Glance's relative next link, and the
//     create → upload → active path the openstack CLI uses.
//   - Neutron: networks (the tenant network "private" and the external
//     network "public"), each with one subnet ("<name>-subnet"); one port
//     per server with an address, gone with the server; floating IPs on
//     external networks, associated and disassociated by PUT of port_id,
//     with Neutron's refusals (a tenant network, a missing port, a port
//     that has one already). Lists ignore filters on attributes a
//     resource lacks, as Neutron does.
//   - Octavia: load balancers, listeners, pools, health monitors and
//     members (one by one and the batch update that replaces a pool's
//     whole set) in Octavia's JSON, answering under /v2 and /v2.0. Every
//     change puts its load balancer in PENDING_* for Options.LBUpdateTime,
//     and while it is pending every other change under it is refused with
//     Octavia's 409 "Load Balancer <id> is immutable and cannot be
//     updated.". Duplicate members (same address and port) get 409,
//     missing ones 404, weights outside 0..256 400, attributes the API
//     does not know 400. Deleting a load balancer with children needs
//     cascade.
//
// Traffic is real too. Each listener serves HTTP on a socket of its own
// (ListenerURL) and forwards every request to one member of its default
// pool, round robin by weight among the members that are admin up, have
// a weight, are ACTIVE or PENDING_UPDATE and, when the pool has a health
// monitor, ONLINE; with none it answers 503 as HAProxy does. A health
// monitor really probes its members every Options.MonitorInterval (HTTP
// monitors GET url_path and check expected_codes; the others open a TCP
// connection): max_retries successes make a member ONLINE,
// max_retries_down failures OFFLINE when its application answered
// wrongly and ERROR when nothing answered. A floating IP has a loopback
// address of its own and forwards each of Options.HealthPorts there to
// the same port of its port's server (502 when it has none); a new
// association applies to the next request, requests in flight finish
// where they began. Every answer of a server's application carries
// X-Sim-Server: <server id>, passed through by both proxies, so tests see
// where each request went.
//
// Each server gets its own loopback address (127.x.y.z; Linux routes all
// of 127/8 to lo) and, once ACTIVE and its application started
// (Options.HealthDelay later), answers HTTP health checks on each of
// Options.HealthPorts there, so health-gated rollouts are tested end to
// end. Those ports are settled once, at New: by default 8080 when it is
// free, else a port the kernel finds free, since a program listening on
// 0.0.0.0:8080 (common on a developer's machine) holds that port on every
// loopback address. Configurations take the port from Sim.HealthPort, and
// New fails at once, naming the port and its holder, when it cannot place
// the applications.
//
// Tests steer it with boot-time distributions, per-server health, boots
// that fail or never finish (the next ones, or all in one availability
// zone: FailBootsInZone), quota, members whose create ends in
// ERROR (FailNextMembers), and fault injection (an error status, a 429
// with Retry-After, a request that acts and then answers 500 or never
// answers; Octavia faults answer in Octavia's shape), and watch it through
// the request log, the server list, a Monitor that samples the fleet and
// a PoolMonitor that samples how many members of a pool serve. Load
// balancers, members and floating IPs can also be made directly
// (AddLoadBalancer, AddMember, AddFloatingIP), as can volumes, already
// attached or not (AddVolume, AttachVolume); FailNextVolumeSnapshots makes
// snapshots end in error.
//
// Regions exist because Phoenix places groups across locations and fails
// them over when one is lost. Options.Regions adds regions beside
// Options.Region: each is a whole cloud but for Keystone (its own
// servers, images, networks, load balancers, volumes, quota, faults and
// servers' applications, seeded alike, on a listener of its own), and the
// primary's one Keystone lists every region in its catalog and issues
// the tokens they all accept, as on a real cloud. Region(name) steers and
// reads one region; SetDown takes a region's API off the network while
// its servers run on and answer their health checks.
//
// Everything runs in real time on timers; Close stops the API, every
// health listener, listener and floating IP socket, every timer, probe
// and goroutine the simulator started.
// Only tests, `phoenix demo` and `phoenix sim` import it.
package sim
