// Package config loads and validates Phoenix's configuration file.
//
// A wrong value is refused at load time, before anything touches a cloud,
// with the file, the field path (groups[1].rollout.max_surge), the line,
// and what was expected. Every problem of a file is reported at once, and
// unknown fields are refused too, so a misspelt setting never silently
// falls back to its default.
//
// # Reference
//
// Top level:
//
//	cloud    string   clouds.yaml entry to use. Default: OS_CLOUD, and
//	                  without it the OS_* variables. Credentials never
//	                  live in this file.
//	groups   list     at least one group.
//
// Each group:
//
//	name                string   required; lower-case letters, digits and
//	                             inner dashes, at most 40 characters. It
//	                             becomes the Nova tag phoenix-group:<name>
//	                             and the prefix of server names.
//	count               int      required; 1 to 10000 servers.
//	image               mapping  required; the baseline image:
//	  id                string     one image by ID; excludes the others.
//	  name              string     Glance name to match exactly.
//	  properties        mapping    image properties that must match.
//	  tags              list       image tags that must all be present.
//	  newest            bool       pick the most recently created active
//	                               match; without it, more than one match
//	                               is an error. Default false.
//	flavor              string   required; flavor name or ID.
//	networks            list     required; network names or IDs. Health
//	                             probes go to the address on the first.
//	key_name            string   Nova key pair name. Default none.
//	security_groups     list     security group names. Default: Nova's.
//	server_group        string   server group name or ID (affinity
//	                             policies). Default none.
//	availability_zones  list     zones to spread new servers across, each
//	                             to the zone with the fewest current
//	                             servers. Default: Nova chooses.
//	user_data_file      string   cloud-init user data, relative to this
//	                             file's directory; read at load time.
//	metadata            mapping  extra server metadata; keys starting with
//	                             "phoenix:" are reserved.
//	rollout             mapping
//	  max_surge         int|"N%"  servers allowed above count during a
//	                              rollout; a percentage rounds up.
//	                              Default 1.
//	  max_unavailable   int|"N%"  servers allowed below count; a
//	                              percentage rounds down. Default 0. Both
//	                              coming to 0 is refused.
//	  min_ready         duration  how long a new server must be healthy
//	                              before it counts. Default 0s.
//	health              mapping   without http or tcp, Nova's ACTIVE
//	                              status is the only health signal, and the
//	                              other health fields are refused as
//	                              having no effect.
//	  http              mapping   GET http://<address>:<port><path>
//	    port            int         required, 1-65535.
//	    path            string      Default "/".
//	    expect_status   int         Default: any 2xx.
//	  tcp               mapping   a TCP connect to port; excludes http.
//	    port            int         required, 1-65535.
//	  interval          duration  between probes. Default 5s.
//	  timeout           duration  of one probe, at most interval.
//	                              Default 2s (or interval, if shorter).
//	  healthy_threshold   int     passes in a row to be healthy. Default 3.
//	  unhealthy_threshold int     failures in a row to be unhealthy.
//	                              Default 3.
//	  grace             duration  after ACTIVE, failures do not count.
//	                              Default 60s.
//
// Durations are Go durations: "300ms", "30s", "5m", "1h30m".
package config
