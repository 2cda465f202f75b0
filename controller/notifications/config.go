package notifications

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config says where and how the listener listens.
type Config struct {
	// URL is the broker, amqp:// or amqps://, credentials inside. It
	// never appears in a log line, an error or a Status but redacted.
	URL string
	// CAFile is a PEM file of the CAs that sign the broker's certificate,
	// for amqps; the system's when empty.
	CAFile string
	// Exchanges are the services' control exchanges, default {"glance",
	// "nova"}.
	Exchanges []string
	// Topics are oslo.messaging notification topics, default
	// {"notifications", "versioned_notifications"}; the queue is bound to
	// <topic>.info on each exchange.
	Topics []string
	// Queue is this listener's own queue; required, and one per replica
	// (each replica must hear every message).
	Queue string
	// QueueExpires is the queue's x-expires: the broker deletes a queue
	// that no one has consumed for this long, so a replica gone for good
	// leaves nothing growing (default 1h).
	QueueExpires time.Duration
	// MaxLength is the queue's x-max-length: past it the broker drops the
	// oldest message (default 10000).
	MaxLength int
	// Backoff bounds the wait between connection attempts (default 1s to
	// 30s).
	Backoff Backoff
}

// Defaults for Config.
var (
	DefaultExchanges = []string{"glance", "nova"}
	DefaultTopics    = []string{"notifications", "versioned_notifications"}
)

const (
	DefaultQueueExpires = time.Hour
	DefaultMaxLength    = 10000
)

// endpoint is a checked broker URL.
type endpoint struct {
	url      string      // as configured, credentials inside: for dialing only
	redacted string      // for logs and errors
	secret   string      // the password, scrubbed from any text that leaves
	tls      *tls.Config // nil for amqp://
}

// withDefaults fills in defaults and refuses what cannot work, before
// anything connects.
func (c Config) withDefaults() (Config, error) {
	if len(c.Exchanges) == 0 {
		c.Exchanges = DefaultExchanges
	}
	if len(c.Topics) == 0 {
		c.Topics = DefaultTopics
	}
	if c.QueueExpires == 0 {
		c.QueueExpires = DefaultQueueExpires
	}
	if c.MaxLength == 0 {
		c.MaxLength = DefaultMaxLength
	}
	if c.Backoff.Min == 0 {
		c.Backoff.Min = DefaultBackoffMin
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = max(DefaultBackoffMax, c.Backoff.Min)
	}
	var errs []error
	if strings.TrimSpace(c.Queue) == "" {
		errs = append(errs, errors.New("queue: a name is required (one per replica)"))
	}
	if c.QueueExpires < time.Millisecond {
		errs = append(errs, fmt.Errorf("queue expires %s: must be at least 1ms", c.QueueExpires))
	}
	if c.MaxLength < 0 {
		errs = append(errs, fmt.Errorf("max length %d: must not be negative", c.MaxLength))
	}
	if c.Backoff.Min < 0 || c.Backoff.Max < c.Backoff.Min {
		errs = append(errs, fmt.Errorf("backoff %s to %s: must be positive, min up to max", c.Backoff.Min, c.Backoff.Max))
	}
	for _, e := range c.Exchanges {
		if e == "" {
			errs = append(errs, errors.New("exchanges: a name is empty"))
		}
	}
	for _, t := range c.Topics {
		if t == "" {
			errs = append(errs, errors.New("topics: a name is empty"))
		}
	}
	return c, errors.Join(errs...)
}

// parseEndpoint checks the broker URL and builds its TLS configuration.
// Its errors never quote the URL but redacted: url.Parse's would quote it
// whole, password and all.
func parseEndpoint(raw, caFile string) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return endpoint{}, errors.New("broker URL: cannot be parsed (not shown: it may hold a password)")
	}
	ep := endpoint{url: raw, redacted: u.Redacted()}
	if p, ok := u.User.Password(); ok {
		ep.secret = p
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return endpoint{}, fmt.Errorf("broker URL %s: the scheme must be amqp or amqps", ep.redacted)
	}
	if u.Hostname() == "" {
		return endpoint{}, fmt.Errorf("broker URL %s: no host", ep.redacted)
	}
	if _, err := amqp.ParseURI(raw); err != nil {
		return endpoint{}, fmt.Errorf("broker URL %s: %s", ep.redacted, ep.scrub(err.Error()))
	}
	if u.Scheme == "amqp" {
		if caFile != "" {
			return endpoint{}, fmt.Errorf("broker URL %s: a CA file is set but the URL is not amqps", ep.redacted)
		}
		return ep, nil
	}
	ep.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return endpoint{}, fmt.Errorf("read CA file %s: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return endpoint{}, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
		ep.tls.RootCAs = pool
	}
	return ep, nil
}

// scrub takes the password out of text that is about to leave the
// package (a log line, an error, the status), whatever put it there.
func (ep endpoint) scrub(text string) string {
	if ep.secret == "" {
		return text
	}
	for _, s := range []string{ep.secret, url.QueryEscape(ep.secret), url.PathEscape(ep.secret)} {
		text = strings.ReplaceAll(text, s, "xxxxx")
	}
	return text
}
