// Package sim is an OpenStack API simulator: Keystone v3, Nova v2.1,
// Glance v2 and the Neutron network list, served over real HTTP on
// loopback.
//
// It exists so that Phoenix's tests, demo and benchmarks run the very code
// that talks to a real cloud — gophercloud over HTTP, with its pagination,
// microversion headers, error bodies and retries — rather than a fake of
// the provisioner interface, which would agree with whatever Phoenix
// believes. It answers with the JSON shapes, status codes and headers of
// the real services, including their traps: Nova ignores list filters it
// does not know and ignores the tag filter below microversion 2.26, adds a
// next link whenever a page is full, and keeps a deleted server visible
// (task state "deleting") for a while.
//
// Each server gets its own loopback address (127.x.y.z; Linux routes all
// of 127/8 to lo) and, once booted and its application started, answers
// health checks there, so health-gated rollouts are tested end to end.
// Tests steer it with boot-time distributions, per-server health, quota
// and fault injection (an error status, a 429 with Retry-After, a request
// that acts and then answers 500 or never answers), and watch it with the
// request log and a Monitor that samples the fleet.
//
// Only tests, `phoenix demo` and `phoenix sim` import it.
package sim
