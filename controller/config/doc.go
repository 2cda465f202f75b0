// Package config loads and validates Phoenix's configuration file.
//
// [Load] reads a file and [Parse] reads bytes; both apply the defaults
// below, read each group's user_data_file, and validate. A configuration
// that is refused comes back as an [*Error] listing every problem of the
// file at once, one per line, each with the file, the field path, the line
// and what was expected:
//
//	phoenix.yaml: groups[1].rollout.max_surge (line 12): expected a whole number ≥ 0 or a percentage such as "25%", got "lots"
//	phoenix.yaml: groups[0].rollout (line 9): unknown field "max_surgee"; did you mean "max_surge"?
//
// Paths count list items from zero and name map keys as fields
// (groups[0].metadata.owner). Unknown fields and keys given twice are
// refused, so a misspelt setting never silently falls back to its default.
// A value that cannot be read is reported once: the rules that would judge
// it (or judge other fields by it) stay quiet until it is fixed.
//
// # File
//
// One YAML document whose top level is a mapping. Standard YAML anchors,
// aliases and merge keys (<<: *defaults) may be used to share settings
// between groups; top-level keys starting with "x-" are ignored, to hold
// such anchors:
//
//	x-base: &base
//	  flavor: m1.small
//	  networks: [app-net]
//	groups:
//	  - <<: *base
//	    name: web
//	    ...
//
// A key written in a mapping wins over a merged one. Numbers may be quoted
// ("8080"). An empty list or mapping is the same as leaving the field out.
//
// # Reference
//
// Top level:
//
//	cloud    string   clouds.yaml entry to use. Default: the OS_CLOUD
//	                  variable, and without it the OS_* variables of an
//	                  openrc file. Credentials never live in this file.
//	groups   list     required; at least one group.
//	controller mapping  settings of `phoenix daemon` (ignored by the
//	                  one-shot commands):
//	  interval          duration  between reconciles of a group at rest
//	                              and between image watches, ≥ 1s; up to
//	                              a tenth more at random. Default 1m.
//	  parallel_groups   int       groups reconciled at once, 1 to 1000.
//	                              Default 4.
//	  listen            host:port the HTTP server (/healthz, /readyz,
//	                              /v1/status, /v1/events, and /metrics
//	                              unless metrics_listen is set).
//	                              Default 127.0.0.1:7355.
//	  metrics_listen    host:port /metrics (and /healthz) on a listener of
//	                              its own, for Prometheus; another
//	                              address than listen. Default none:
//	                              /metrics stays on listen.
//	  tls_cert_file     path      with tls_key_file: both listeners serve
//	  tls_key_file      path      HTTPS; read again on every reload.
//	  webhook_secret_file path    the HMAC secret of /v1/events, at
//	                              least 32 bytes (never the secret
//	                              itself in this file); without it
//	                              events are refused.
//	  previous_webhook_secret_file path
//	                              the secret being rotated out: events
//	                              signed with it are accepted too, until
//	                              it is removed and the file reloaded.
//	  notify            list      where a JSON notice goes when a rollout
//	                              starts, completes or halts: each an
//	                              http(s) URL, or {url_file: path} for a
//	                              URL that carries a token. Messages show
//	                              a URL's scheme and host only.
//	  coordination      mapping   several replicas share the groups;
//	                              without it one daemon does all:
//	    etcd            mapping   the cluster replicas agree through:
//	      endpoints     list      required; client URLs
//	                              (http(s)://host:port, or host:port).
//	      tls           mapping   ca_file, and cert_file with key_file
//	                              for a client certificate.
//	      prefix        string    key prefix, starts and ends with /.
//	                              Default /phoenix/.
//	      lease_ttl     duration  whole seconds, ≥ 2s: how long a
//	                              silent replica keeps its groups.
//	                              Default 15s.
//	                  Relative paths are relative to this file.
//
// Each group (required fields first):
//
//	name                string   required; 1 to 40 lower-case letters,
//	                             digits and inner dashes
//	                             (^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$),
//	                             unique. It goes into the Nova tag
//	                             phoenix-group:<name> and into server names.
//	count               int      required; 1 to 10000 servers.
//	image               mapping  required; the baseline image, either
//	                             by id alone or by a search of name,
//	                             properties and tags (at least one):
//	  id                string     one image by ID; excludes all of the
//	                               others, newest included.
//	  name              string     Glance name to match exactly.
//	  properties        mapping    custom image properties that must all
//	                               match (os_distro: ubuntu). Names must be
//	                               non-empty and not one of Glance's own
//	                               image fields or list options (status,
//	                               visibility, owner, tag, sort, ...),
//	                               which never match as properties.
//	  tags              list       image tags that must all be present;
//	                               each 1 to 255 characters.
//	  newest            bool       take the most recently created active
//	                               match; without it, more than one match
//	                               is an error at rollout time. Default
//	                               false.
//	flavor              string   required; flavor name or ID.
//	networks            list     required; at least one network name or
//	                             ID, none empty, none twice. Health probes
//	                             go to the server's address on the first.
//	key_name            string   Nova key pair name. Default: none.
//	security_groups     list     security group names or IDs, none empty.
//	                             Default: the project's default group.
//	server_group        string   Nova server group name or ID (affinity
//	                             policies). Default: none.
//	availability_zones  list     zones to spread new servers across, none
//	                             empty, none twice; each new server goes
//	                             to the zone with the fewest current
//	                             servers. Default: Nova chooses.
//	user_data_file      string   cloud-init user data file. A relative
//	                             path is relative to the configuration
//	                             file's directory. It must be a readable
//	                             regular file and fit Nova's limit of 65535
//	                             bytes once base64-encoded (49149 bytes).
//	                             It is read at load time: changing it
//	                             changes the group's spec revision, which
//	                             replaces the servers. Default: none.
//	metadata            mapping  extra Nova server metadata: at most 100
//	                             pairs; keys of 1 to 255 characters from
//	                             A-Z a-z 0-9 space - _ : . (Nova's set);
//	                             values of at most 255 characters. Keys
//	                             starting with "phoenix:" are reserved for
//	                             Phoenix's own record on each server.
//	                             Default: none.
//	hold                bool     while true no voluntary replacement
//	                             starts; heals and compromised servers
//	                             still proceed. A hold kept in version
//	                             control. Default false.
//	rollout             mapping  how the group moves to a new image or spec:
//	  max_surge         int|"N%"   servers allowed above count during a
//	                               rollout: a whole number ≥ 0, or a
//	                               percentage "0%" to "100%" of count that
//	                               rounds up. Default 1.
//	  max_unavailable   int|"N%"   servers allowed below count during a
//	                               rollout, at most count; a percentage
//	                               rounds down. Default 0. If both come to
//	                               0 servers the group is refused: no
//	                               server could ever be replaced.
//	  min_ready         duration   how long a new server must have been
//	                               healthy before it counts as available.
//	                               Default 0s.
//	  windows           list       maintenance windows, the only times a
//	                               voluntary replacement starts, each
//	                               "DAYS HH:MM-HH:MM [ZONE]" such as
//	                               "Mon-Fri 02:00-05:00 Europe/Berlin":
//	                               DAYS a comma list of Mon Tue Wed Thu
//	                               Fri Sat Sun and ranges of them (Mon-Fri;
//	                               Sat-Mon wraps round), or daily or *;
//	                               times 00:00 to 23:59, the end up to
//	                               24:00, and an end at or before the start
//	                               closes the next day; ZONE an IANA name,
//	                               UTC if left out. Read on the zone's wall
//	                               clock, daylight saving included.
//	                               Default: none, always open.
//	  blockers          mapping    signals that keep voluntary
//	                               replacements from starting:
//	    prometheus      mapping      while query returns any series, no
//	                                 voluntary replacement starts; a query
//	                                 that cannot be answered blocks too.
//	      url           string         required; the http(s) base URL of
//	                                   the Prometheus server.
//	      query         string         required; a PromQL instant query.
//	      timeout       duration       of one query, above zero.
//	                                   Default 10s.
//	health              mapping  how a server is judged healthy:
//	  http              mapping    GET http://<address>:<port><path>;
//	                               excludes tcp.
//	    port            int          required; 1 to 65535.
//	    path            string       must start with "/". Default "/".
//	    expect_status   int          the status a healthy server answers,
//	                                 100 to 599. Default 0: any 2xx.
//	  tcp               mapping    a TCP connection to port opens;
//	                               excludes http.
//	    port            int          required; 1 to 65535.
//	  interval          duration   between two probes of one server, above
//	                               zero. Default 5s.
//	  timeout           duration   of one probe, above zero and at most
//	                               interval. Default 2s, or interval if
//	                               that is shorter.
//	  healthy_threshold   int      passes in a row to become healthy, ≥ 1.
//	                               Default 3.
//	  unhealthy_threshold int      failures in a row to become unhealthy,
//	                               ≥ 1. Default 3.
//	  grace             duration   after a server becomes ACTIVE, failures
//	                               do not count. Default 60s.
//	traffic             mapping  how requests reach the servers, so that
//	                             Phoenix moves them itself; octavia and
//	                             floating_ip exclude each other. Default:
//	                             none (the health check is the only gate).
//	  octavia           mapping    every serving server is a member of an
//	                               Octavia pool; an old one is drained
//	                               (weight 0) before it goes.
//	    load_balancer   string       name or ID; narrows the pool search.
//	    pool            string       required; name or ID.
//	    protocol_port   int          required; 1 to 65535.
//	    network         string       one of the group's networks: its
//	                                 address becomes the member address.
//	                                 Default: the first network.
//	    subnet          string       the member's subnet, name or ID.
//	                                 Default: none (the VIP subnet).
//	    weight          int          1 to 256. Default 1.
//	    drain           duration     at weight 0 before the member and
//	                                 its server go, ≥ 0. Default 30s.
//	  floating_ip       mapping    for a group of count 1 only: the address
//	                               moves to the new server once healthy.
//	    address         string       an existing floating IP; or
//	    pool            string       an external network to allocate one
//	                                 from (found again by its description).
//	    network         string       as for octavia.
//	    drain           duration     the old server lives on this long
//	                                 after the address left it. Default 30s.
//	placement           mapping  the group over several locations (regions
//	                             or clouds), with failover when one goes
//	                             down. Default: none, the group lives in
//	                             the top-level cloud. May be written as the
//	                             bare list of its locations, with the
//	                             default failover_after; messages then
//	                             still name placement.locations[N].
//	                             Refused with stateful (a data volume
//	                             cannot move between regions or clouds),
//	                             and with traffic.floating_ip over more
//	                             than one location (a floating IP belongs
//	                             to one location: use traffic.octavia with
//	                             a pool of the same name in each, and DNS
//	                             across their load balancers). Moving
//	                             between locations is not a new spec: the
//	                             spec revision leaves placement out. The
//	                             group's other settings apply in every
//	                             location, so what they name (image,
//	                             flavor, networks, pool) must be found
//	                             there by that name.
//	  failover_after    duration   a location is down once its API or its
//	                               server creates have failed this long,
//	                               and its share goes to the others until
//	                               it is back. At least 10s, so that a
//	                               passing hiccup does not move servers
//	                               back and forth. Default 2m.
//	  locations         list       required; at least one (a single one is
//	                               a group moved to another region). No
//	                               two in the same region of the same cloud:
//	    name            string       letters, digits and - _ . /, at most
//	                                 63 characters, unique in the group; it
//	                                 goes into server metadata and metric
//	                                 labels. Default: the region; the cloud
//	                                 without a region; "cloud/region" when
//	                                 both are written.
//	    cloud           string       a clouds.yaml entry. Default: the
//	                                 top-level cloud.
//	    region          string       a region of that cloud. Default: the
//	                                 cloud's default region (its
//	                                 region_name). At least one of cloud
//	                                 and region is required.
//	    weight          int          the location's share of count against
//	                                 the others', 0 to 10000; 0 is a standby
//	                                 that gets servers only when another
//	                                 location is down. At least one weight
//	                                 above 0. Default 1.
//	    availability_zones list      zones of this location, none empty,
//	                                 none twice. Default: the group's
//	                                 availability_zones.
//	promote             mapping  makes the group a stage: once it has
//	                             converged on an image and every server
//	                             has served healthy for after (and
//	                             rollout.watch has ended), Phoenix adds
//	                             tag to the image in Glance; a later
//	                             stage's image.tags requires it (with
//	                             newest: true). Default: none. Refused
//	                             with placement (each location runs its
//	                             own image).
//	  tag               string     required: a Glance tag, at most 255
//	                               characters, no slash, no control
//	                               character, no spaces around it; not
//	                               one the group's own image.tags requires.
//	  after             duration   how long every server of the image must
//	                               have served healthy. Default 1h.
//
// Without http or tcp there is no health check: Nova's ACTIVE status is
// the only health signal, and a new server counts as healthy once ACTIVE.
// That is allowed, but the probe settings (interval, timeout, the
// thresholds, grace) are then refused, since they would have no effect and
// most likely mean the check itself was forgotten.
//
// Durations are Go durations with a unit: "300ms", "30s", "5m", "1h30m".
// Negative durations are refused, and so is a bare number such as 30 (the
// message suggests "30s").
//
// A placement in full, then in its short form (the locations alone, with
// failover_after at its default):
//
//	placement:
//	  failover_after: 2m
//	  locations:
//	    - {region: RegionOne, weight: 2}          # name RegionOne
//	    - {cloud: othercloud, region: RegionTwo}  # name othercloud/RegionTwo, weight 1
//	    - {name: standby, region: RegionThree, weight: 0}
//
//	placement: [{region: RegionOne, weight: 2}, {region: RegionTwo}]
//
// # Defaults
//
// Each default applies only when the field is left out (or written as
// null); a value written explicitly, even 0, is kept and validated:
//
//	rollout.max_surge            1       (DefaultMaxSurge)
//	rollout.max_unavailable      0       (DefaultMaxUnavailable)
//	rollout.min_ready            0s
//	rollout.strategy             replace (StrategyReplace)
//	rollout.blockers.prometheus.timeout  10s  (DefaultBlockerTimeout)
//	backup.volumes               none    (VolumesNone)
//	health.interval              5s      (DefaultHealthInterval)
//	health.rise_interval         interval/5
//	health.timeout               2s      (DefaultHealthTimeout), capped at interval
//	health.healthy_threshold     3       (DefaultHealthyThreshold)
//	health.unhealthy_threshold   3       (DefaultUnhealthyThreshold)
//	health.grace                 60s     (DefaultGrace)
//	health.http.path             "/"     (DefaultHTTPPath)
//	health.http.expect_status    0: any 2xx
//	traffic.*.drain              30s     (DefaultDrain)
//	traffic.octavia.weight       1       (DefaultMemberWeight)
//	traffic.*.network            the group's first network
//	placement.failover_after     2m      (DefaultFailoverAfter)
//	placement.locations[].name   region, cloud, or "cloud/region"
//	placement.locations[].weight 1       (DefaultLocationWeight)
//	placement.locations[].availability_zones  the group's availability_zones
//
// [IntOrPercent.Set] tells whether max_surge and max_unavailable were
// written in the file.
package config
