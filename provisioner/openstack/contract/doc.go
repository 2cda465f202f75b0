// Package contract holds the contract tests: one suite, run against two
// targets — the project's OpenStack simulator, always, and a real cloud
// (examples/devcloud) when PHOENIX_DEVCLOUD_CLOUDS names its clouds.yaml.
//
// A simulator we wrote ourselves can agree with our own code and still be
// wrong about OpenStack. The suite pins down every behaviour Phoenix relies
// on — auth and catalog, server create with tags and metadata at microversion
// 2.52, tag-filtered paginated lists, metadata merge, status transitions,
// delete then 404, Glance selection, createImage, quota refusals, Octavia —
// and the two targets must agree. Where a target cannot do something yet
// (the simulator has no Octavia before the traffic issue), the test says so
// in its output for that target instead of passing silently.
//
//	go test ./provisioner/openstack/contract/                      # simulator only
//	PHOENIX_DEVCLOUD_CLOUDS=/var/lib/phoenix-devcloud/clouds.yaml \
//	    go test ./provisioner/openstack/contract/                  # both
package contract
