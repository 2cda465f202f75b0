package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func (v *validator) controller(c *Controller) {
	const path = "controller"
	if c.Interval < Duration(time.Second) {
		v.bad(path+".interval", "expected a duration of at least 1s, got %s", c.Interval)
	}
	if c.ParallelGroups < 1 || c.ParallelGroups > 1000 {
		v.bad(path+".parallel_groups", "expected from 1 to 1000 groups at a time, got %d", c.ParallelGroups)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		v.bad(path+".listen", "expected host:port such as 127.0.0.1:9090, got %q", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.bad(path+".listen", "expected a port from 0 to 65535 in %q", c.Listen)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		v.badFrom(path, []string{path + ".tls_cert_file", path + ".tls_key_file"}, "tls_cert_file and tls_key_file go together: set both for HTTPS, or neither")
	}
	v.file(&c.TLSCertFile, path+".tls_cert_file")
	v.file(&c.TLSKeyFile, path+".tls_key_file")
	v.file(&c.WebhookSecretFile, path+".webhook_secret_file")
	for i, u := range c.Notify {
		at := fmt.Sprintf("%s.notify[%d]", path, i)
		parsed, err := url.Parse(u)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			v.bad(at, "expected an http or https URL, got %q", redactURL(u))
		}
	}
	if e := c.Coordination.Etcd; e != nil {
		v.etcd(e, path+".coordination.etcd")
	}
	if a := c.Notifications.AMQP; a != nil {
		v.amqp(a, path+".notifications.amqp")
	}
}

// amqp checks the broker notifications are read from, and reads its URL
// from url_file. No message quotes the URL: it carries a password.
func (v *validator) amqp(a *AMQP, path string) {
	scheme := ""
	switch {
	case a.URLFile == "":
		v.bad(path+".url_file", "expected a file holding the broker's URL, such as amqp://phoenix:PASSWORD@rabbit:5672/ (the services' transport_url)")
	default:
		v.file(&a.URLFile, path+".url_file")
		if raw, err := os.ReadFile(a.URLFile); err == nil {
			a.URL = strings.TrimSpace(string(raw))
			u, err := url.Parse(a.URL)
			switch {
			case err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Hostname() == "":
				v.bad(path+".url_file", "expected %s to hold one amqp:// or amqps:// URL with a host (its content is not shown: it may hold a password)", a.URLFile)
			default:
				scheme = u.Scheme
			}
		}
	}
	if a.CAFile != "" && scheme == "amqp" {
		v.bad(path+".ca_file", "expected an amqps:// URL in url_file to go with ca_file (a plain amqp:// connection checks no certificate)")
	}
	v.file(&a.CAFile, path+".ca_file")
	if len(a.Exchanges) == 0 {
		v.bad(path+".exchanges", "expected at least one exchange, such as nova")
	}
	v.distinct(a.Exchanges, path+".exchanges", "an exchange name such as nova", "exchange")
	if len(a.Topics) == 0 {
		v.bad(path+".topics", "expected at least one topic, such as versioned_notifications")
	}
	v.distinct(a.Topics, path+".topics", "a topic such as versioned_notifications", "topic")
	switch {
	case a.Queue == "" || len(a.Queue) > 200 || strings.ContainsAny(a.Queue, " \t\n"):
		v.bad(path+".queue", "expected a queue name of 1 to 200 characters without spaces, got %q", a.Queue)
	case strings.HasPrefix(a.Queue, "amq."):
		v.bad(path+".queue", "expected a queue name not starting with amq. (RabbitMQ reserves it), got %q", a.Queue)
	}
	if a.QueueExpires < Duration(time.Minute) {
		v.bad(path+".queue_expires", "expected a duration of at least 1m (the broker deletes the queue once unread this long), got %s", a.QueueExpires)
	}
}

// MinLeaseTTL is the shortest lease etcd grants with its default
// election timeout; a shorter one would be lengthened silently.
const MinLeaseTTL = 2 * time.Second

// etcd checks the cluster replicas coordinate through.
func (v *validator) etcd(e *Etcd, path string) {
	if len(e.Endpoints) == 0 {
		v.bad(path+".endpoints", "expected at least one etcd client URL such as https://etcd-1:2379")
	}
	for i, ep := range e.Endpoints {
		at := fmt.Sprintf("%s.endpoints[%d]", path, i)
		hostPort := ep
		if scheme, rest, ok := strings.Cut(ep, "://"); ok {
			if scheme != "http" && scheme != "https" {
				v.bad(at, "expected an http or https URL, or host:port, got %q", ep)
				continue
			}
			hostPort = rest
		}
		if host, port, err := net.SplitHostPort(hostPort); err != nil || host == "" || port == "" {
			v.bad(at, "expected an etcd client URL such as https://etcd-1:2379, got %q", ep)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			v.bad(at, "expected a port from 1 to 65535 in %q", ep)
		}
	}
	if len(e.Prefix) < 2 || !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") {
		v.bad(path+".prefix", "expected a key prefix that starts and ends with a slash, such as /phoenix/, got %q", e.Prefix)
	}
	switch ttl := e.LeaseTTL.D(); {
	case ttl < MinLeaseTTL:
		v.bad(path+".lease_ttl", "expected a duration of at least %s (etcd grants no shorter lease), got %s", MinLeaseTTL, e.LeaseTTL)
	case ttl%time.Second != 0:
		v.bad(path+".lease_ttl", "expected whole seconds (etcd leases count in seconds), got %s", e.LeaseTTL)
	}
	t := &e.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.badFrom(path+".tls", []string{path + ".tls.cert_file", path + ".tls.key_file"}, "cert_file and key_file go together: set both for a client certificate, or neither")
	}
	v.file(&t.CAFile, path+".tls.ca_file")
	v.file(&t.CertFile, path+".tls.cert_file")
	v.file(&t.KeyFile, path+".tls.key_file")
}

// file checks that a file a field names (when it names one) is a regular
// file that can be read. A relative path is taken from the configuration
// file's directory, like user_data_file, and kept absolute so that a
// reload or a changed working directory finds the same file.
func (v *validator) file(name *string, path string) {
	if *name == "" {
		return
	}
	if !filepath.IsAbs(*name) {
		*name = filepath.Join(v.baseDir, *name)
	}
	if info, err := os.Stat(*name); err != nil {
		v.bad(path, "cannot read %s: %v", *name, unwrapPath(err))
	} else if !info.Mode().IsRegular() {
		v.bad(path, "%s is not a regular file", *name)
	}
}
