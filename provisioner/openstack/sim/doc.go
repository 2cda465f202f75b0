// Package sim is an OpenStack API simulator: Keystone v3, Nova v2.1,
// Glance v2 and the Neutron network list, served over real HTTP on
// loopback.
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
//     pointing back at the simulator, tokens that expire (401, so clients
//     re-authenticate).
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
//   - Glance: images with custom properties as top-level keys, the list
//     filters (name, status, visibility, tag, owner, any property), sort
//     keys, limit/marker pages with Glance's relative next link, and the
//     create → upload → active path the openstack CLI uses.
//   - Neutron: the network list and show.
//
// Each server gets its own loopback address (127.x.y.z; Linux routes all
// of 127/8 to lo) and, once ACTIVE and its application started
// (Options.HealthDelay later), answers HTTP health checks on each of
// Options.HealthPorts there, so health-gated rollouts are tested end to
// end. Tests steer it with boot-time distributions, per-server health,
// boots that fail or never finish, quota, and fault injection (an error
// status, a 429 with Retry-After, a request that acts and then answers 500
// or never answers), and watch it through the request log, the server
// list and a Monitor that samples the fleet.
//
// Everything runs in real time on timers; Close stops the API, every
// health listener, every timer and every goroutine the simulator started.
// Only tests, `phoenix demo` and `phoenix sim` import it.
package sim
