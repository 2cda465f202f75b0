package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-ops/phoenix/controller/trigger"
)

func (v *validator) controller(c *Controller) {
	const path = "controller"
	if c.Interval < Duration(time.Second) {
		v.bad(path+".interval", "expected a duration of at least 1s, got %s", c.Interval)
	}
	if c.ParallelGroups < 1 || c.ParallelGroups > 1000 {
		v.bad(path+".parallel_groups", "expected from 1 to 1000 groups at a time, got %d", c.ParallelGroups)
	}
	v.listen(c.Listen, path+".listen")
	if c.MetricsListen != "" {
		v.listen(c.MetricsListen, path+".metrics_listen")
		if c.MetricsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
			v.badFrom(path+".metrics_listen", []string{path + ".listen", path + ".metrics_listen"},
				"expected an address other than controller.listen's (%s), or none to serve /metrics there", c.Listen)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		v.badFrom(path, []string{path + ".tls_cert_file", path + ".tls_key_file"}, "tls_cert_file and tls_key_file go together: set both for HTTPS, or neither")
	}
	v.file(&c.TLSCertFile, path+".tls_cert_file")
	v.file(&c.TLSKeyFile, path+".tls_key_file")
	v.webhookSecret(&c.WebhookSecretFile, path+".webhook_secret_file")
	v.webhookSecret(&c.PreviousWebhookSecretFile, path+".previous_webhook_secret_file")
	if c.PreviousWebhookSecretFile != "" && c.WebhookSecretFile == "" {
		v.bad(path+".previous_webhook_secret_file", "expected webhook_secret_file beside it: the previous secret only verifies events during a rotation to a new one")
	}
	for i := range c.Notify {
		v.notify(&c.Notify[i], fmt.Sprintf("%s.notify[%d]", path, i))
	}
	if e := c.Coordination.Etcd; e != nil {
		v.etcd(e, path+".coordination.etcd")
	}
	if a := c.Notifications.AMQP; a != nil {
		v.amqp(a, path+".notifications.amqp")
	}
}

// listen checks a listener's host:port; port 0 picks a free one.
func (v *validator) listen(addr, path string) {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		v.bad(path, "expected host:port such as %s, got %q", DefaultListen, addr)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.bad(path, "expected a port from 0 to 65535 in %q", addr)
	}
}

// webhookSecret checks a webhook secret file and, when this user may
// read it, its length: a short HMAC key can be guessed. A file this user
// may not read (a one-shot command run by an operator) is left to the
// daemon, which reads it at start and on every reload.
func (v *validator) webhookSecret(name *string, path string) {
	v.file(name, path)
	if *name == "" || v.failedAt(path) {
		return
	}
	if _, _, err := trigger.ReadSecret(*name); err != nil && !errors.Is(err, fs.ErrPermission) {
		v.bad(path, "%v", err)
	}
}

// failedAt reports whether a problem was already found at path.
func (v *validator) failedAt(path string) bool {
	for _, p := range v.problems {
		if p.Path == path {
			return true
		}
	}
	return false
}

// notify checks one notify target and reads its url_file. No message
// quotes a URL beyond its scheme and host: the rest may be a token.
func (v *validator) notify(t *NotifyTarget, path string) {
	const expected = "expected an http or https URL such as https://chat.example.net/hooks/…"
	switch {
	case t.URL == "" && t.URLFile == "":
		v.bad(path, "expected url or url_file (a file holding the URL, for one that carries a token)")
		return
	case t.URL != "" && t.URLFile != "":
		v.bad(path, "expected url or url_file, not both")
		return
	case t.URL != "":
		if !httpURL(t.URL) {
			v.bad(path, "%s, got %s", expected, RedactURL(t.URL))
		}
		return
	}
	at := path + ".url_file"
	v.file(&t.URLFile, at)
	if v.failedAt(at) {
		return
	}
	raw, err := os.ReadFile(t.URLFile)
	switch {
	case errors.Is(err, fs.ErrPermission):
		t.unread = fmt.Errorf("cannot read %s: %w", t.URLFile, unwrapPath(err))
	case err != nil:
		v.bad(at, "cannot read %s: %v", t.URLFile, unwrapPath(err))
	case !httpURL(strings.TrimSpace(string(raw))):
		v.bad(at, "%s in %s, on one line (its content is not shown: it may hold a token)", expected, t.URLFile)
	default:
		t.fromFile = strings.TrimSpace(string(raw))
	}
}

// httpURL reports whether s is one absolute http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && !strings.ContainsAny(s, " \t\r\n")
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
