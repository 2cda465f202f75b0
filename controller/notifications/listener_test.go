package notifications

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/phoenix-ops/phoenix/controller/notifications/rabbittest"
)

func TestMain(m *testing.M) { os.Exit(rabbittest.Run(m)) }

// patience bounds every wait: a broker restart takes ten seconds or so
// on a busy two-core machine, anything else far less.
const patience = 90 * time.Second

// waitUntil polls cond until it holds, or fails the test after patience.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting until %s", patience, what)
		}
		<-tick.C
	}
}

// recorder is a handler that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got []Notification
}

func (r *recorder) handle(_ context.Context, n Notification) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
}

// find returns the notifications about the server or image id.
func (r *recorder) find(id string) []Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Notification
	for _, n := range r.got {
		if n.ServerID == id || (n.Kind == KindImage && n.ImageID == id) {
			out = append(out, n)
		}
	}
	return out
}

// running is a listener under test, with what it handled and logged.
type running struct {
	*Listener
	rec  *recorder
	logs *observer.ObservedLogs
	stop func() // cancels Run and waits for it to return; idempotent
}

// testConfig is a listener's configuration on b, with a queue of its own
// and a short back-off.
func testConfig(b *rabbittest.Broker) Config {
	return Config{
		URL:          b.URL(),
		Queue:        "phoenix-test-" + uuid.NewString(),
		QueueExpires: 5 * time.Minute,
		Backoff:      Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond},
	}
}

// listen runs a listener until the test ends (or stop), logging to an
// observer and to the test's log.
func listen(t *testing.T, cfg Config) *running {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	rec := &recorder{}
	l, err := NewListener(cfg, rec.handle, log)
	if err != nil {
		t.Fatalf("NewListener: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(patience):
				t.Errorf("Run did not return within %s of its context's end", patience)
			}
		})
	}
	t.Cleanup(stop)
	return &running{Listener: l, rec: rec, logs: logs, stop: stop}
}

func (r *running) waitConnected(t *testing.T) {
	t.Helper()
	waitUntil(t, "the listener is connected", func() bool { return r.Status().Connected })
}

// noPassword fails the test if the broker's password is in anything the
// listener logged or in its status.
func (r *running) noPassword(t *testing.T) {
	t.Helper()
	if s := r.Status(); strings.Contains(fmt.Sprintf("%+v", s), rabbittest.Password) {
		t.Errorf("the password is in the status: %+v", s)
	}
	for _, e := range r.logs.All() {
		if line := fmt.Sprintf("%s %v", e.Message, e.ContextMap()); strings.Contains(line, rabbittest.Password) {
			t.Errorf("the password is in a log line: %s", line)
		}
	}
}

// logged counts the log entries with message msg whose event_type is
// eventType.
func (r *running) logged(msg, eventType string) int {
	n := 0
	for _, e := range r.logs.FilterMessage(msg).All() {
		if e.ContextMap()["event_type"] == eventType {
			n++
		}
	}
	return n
}

// Bodies in oslo's shapes, through rabbittest's oslo notifier.

func versionedBody(t *testing.T, eventType, server, image, state string) []byte {
	msg, _ := rabbittest.Message(eventType, "nova-compute:host1", map[string]any{
		"nova_object.name":      "InstanceActionPayload",
		"nova_object.namespace": "nova",
		"nova_object.version":   "1.9",
		"nova_object.data": map[string]any{
			"uuid":       server,
			"image_uuid": image,
			"state":      state,
			"task_state": nil,
			"metadata":   map[string]string{"phoenix.group": "web"},
			"tags":       []string{"phoenix:web"},
		},
	})
	return rabbittest.Envelope(t, msg)
}

func legacyBody(t *testing.T, eventType, server, image, state string) []byte {
	msg, _ := rabbittest.Message(eventType, "compute.host1", map[string]any{
		"instance_id":       server,
		"state":             state,
		"state_description": "",
		"image_ref_url":     "http://192.0.2.10:9292/images/" + image,
		"image_meta":        map[string]string{"base_image_ref": image},
		"metadata":          map[string]string{"phoenix.group": "web"},
	})
	return rabbittest.Envelope(t, msg)
}

func imageBody(t *testing.T, eventType, image, status string) []byte {
	msg, _ := rabbittest.Message(eventType, "image.localhost", map[string]any{
		"id":     image,
		"name":   "gold-" + image[:8],
		"status": status,
		"tags":   []string{"gold"},
	})
	return rabbittest.Envelope(t, msg)
}

func publish(t *testing.T, b *rabbittest.Broker, exchange, topic string, bodies ...[]byte) {
	t.Helper()
	if err := b.Publish(t.Context(), exchange, topic, bodies...); err != nil {
		t.Fatal(err)
	}
}

// The shapes Nova and Glance publish, to the exchanges and topics they
// publish to, reach the handler with their fields.
func TestListenerHearsNovaAndGlance(t *testing.T) {
	b := rabbittest.Shared(t)
	r := listen(t, testConfig(b))
	r.waitConnected(t)

	server, image := uuid.NewString(), uuid.NewString()
	publish(t, b, "nova", "versioned_notifications", versionedBody(t, "instance.power_off.end", server, image, "stopped"))
	publish(t, b, "nova", "notifications", legacyBody(t, "compute.instance.power_off.end", server, image, "stopped"))
	publish(t, b, "glance", "notifications", imageBody(t, "image.activate", image, "active"))

	waitUntil(t, "both instance events are handled", func() bool { return len(r.rec.find(server)) == 2 })
	waitUntil(t, "the image event is handled", func() bool { return len(r.rec.find(image)) == 1 })
	for _, n := range r.rec.find(server) {
		if n.Kind != KindInstance || n.ImageID != image || n.State != "stopped" || n.Metadata["phoenix.group"] != "web" || n.At.IsZero() || n.MessageID == "" {
			t.Errorf("instance event: %+v", n)
		}
	}
	if n := r.rec.find(image)[0]; n.EventType != "image.activate" || n.Kind != KindImage || n.State != "active" || len(n.Tags) != 1 || n.Publisher != "image.localhost" {
		t.Errorf("image event: %+v", n)
	}
	s := r.Status()
	for _, et := range []string{"instance.power_off.end", "compute.instance.power_off.end", "image.activate"} {
		if s.Handled[et] < 1 {
			t.Errorf("Status.Handled[%s] = %d, want ≥ 1 (%+v)", et, s.Handled[et], s)
		}
	}
	if !s.Connected || s.Reconnects != 0 || s.Malformed != 0 {
		t.Errorf("status %+v", s)
	}
	r.noPassword(t)
}

// An exchange that does not exist yet (a service that has not published
// since the broker started) is declared as oslo declares it, so nothing
// published from then on is missed; one that a service declared durable
// (amqp_durable_queues = true) is used as it is.
func TestListenerExchanges(t *testing.T) {
	b := rabbittest.Shared(t)
	fresh := "glance-" + uuid.NewString()
	durable := "nova-durable-" + uuid.NewString()
	topic := "durable_notifications" // so that oslo's queue for it may be durable too
	image, server := uuid.NewString(), uuid.NewString()
	if err := b.PublishDurable(t.Context(), durable, topic, versionedBody(t, "instance.update", uuid.NewString(), image, "active")); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(b)
	cfg.Exchanges = []string{fresh, durable}
	cfg.Topics = []string{"notifications", topic}
	r := listen(t, cfg)
	r.waitConnected(t)

	publish(t, b, fresh, "notifications", imageBody(t, "image.update", image, "active"))
	if err := b.PublishDurable(t.Context(), durable, topic, versionedBody(t, "instance.update", server, image, "active")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the image event on the new exchange is handled", func() bool { return len(r.rec.find(image)) == 1 })
	waitUntil(t, "the instance event on the durable exchange is handled", func() bool { return len(r.rec.find(server)) == 1 })
	if s := r.Status(); s.Reconnects != 0 {
		t.Errorf("status %+v: declaring the exchanges cost a reconnect", s)
	}
}

// A user with the least rights the README gives Phoenix — its own queues,
// reading the services' exchanges, binding only their notification keys —
// can listen: it may not declare an exchange that exists (403), so it
// checks it passively; one that does not exist yet is bound once it
// appears; and Nova's RPC keys stay out of its reach.
func TestListenerWithTheLeastRights(t *testing.T) {
	b := rabbittest.Shared(t)
	suffix := uuid.NewString()[:8]
	nova, glance := "nova-"+suffix, "glance-"+suffix
	user, password := "phoenix-least-"+suffix, "least-"+suffix
	b.Ctl(t, "add_user", user, password)
	b.Ctl(t, "set_permissions", "-p", "/", user, "^phoenix.*", "^phoenix.*", "^(phoenix.*|nova-.*|glance-.*)$")
	for _, ex := range []string{nova, glance} {
		b.Ctl(t, "set_topic_permissions", "-p", "/", user, ex, "^$", `^(notifications|versioned_notifications)\.info$`)
	}
	server, image := uuid.NewString(), uuid.NewString()
	publish(t, b, nova, "notifications", versionedBody(t, "instance.update", uuid.NewString(), image, "active")) // nova exists

	cfg := testConfig(b)
	cfg.URL, cfg.Exchanges = b.URLAs(user, password), []string{nova, glance}
	r := listen(t, cfg)
	r.waitConnected(t)
	if s := r.Status(); !slices.Equal(s.Unbound, []string{glance}) {
		t.Errorf("unbound %v, want the missing %s", s.Unbound, glance)
	}
	publish(t, b, nova, "versioned_notifications", versionedBody(t, "instance.power_off.end", server, image, "stopped"))
	waitUntil(t, "the event on the existing exchange is handled", func() bool { return len(r.rec.find(server)) == 1 })

	// Glance publishes its first notification, creating its exchange; the
	// listener binds it at its next look and hears what follows.
	waitUntil(t, "the event on the new exchange is handled", func() bool {
		publish(t, b, glance, "notifications", imageBody(t, "image.activate", image, "active"))
		return len(r.rec.find(image)) > 0
	})
	if s := r.Status(); len(s.Unbound) != 0 || s.Reconnects != 0 {
		t.Errorf("status %+v: want every exchange bound, without a reconnect", s)
	}

	// What the rights keep out: Nova's RPC.
	conn, err := amqp.Dial(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	err = ch.QueueBind(cfg.Queue, "compute.host-1", nova, false, nil)
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Errorf("binding Nova's RPC key: %v, want 403 ACCESS_REFUSED", err)
	}
	r.noPassword(t)
}

// Ceilometer (or any other consumer) reading notifications.info keeps
// every message while Phoenix listens: Phoenix's queue is its own.
func TestListenerTakesNothingFromOtherConsumers(t *testing.T) {
	b := rabbittest.Shared(t)
	r := listen(t, testConfig(b))
	r.waitConnected(t)

	// Ceilometer's consumer, on the queue oslo's notifier declares.
	conn := b.Dial(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("notifications.info", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("notifications.info", "notifications.info", "nova", false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume("notifications.info", "ceilometer", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	const count = 20
	servers := map[string]bool{}
	var bodies [][]byte
	for range count {
		id := uuid.NewString()
		servers[id] = true
		bodies = append(bodies, legacyBody(t, "compute.instance.update", id, uuid.NewString(), "active"))
	}
	publish(t, b, "nova", "notifications", bodies...)

	foreign := map[string]bool{}
	timeout := time.After(patience)
	for len(foreign) < count {
		select {
		case d := <-deliveries:
			if n, err := Decode(d.Body); err == nil && servers[n.ServerID] {
				foreign[n.ServerID] = true
			}
		case <-timeout:
			t.Fatalf("the other consumer got %d of %d messages", len(foreign), count)
		}
	}
	waitUntil(t, "Phoenix's listener has every message too", func() bool {
		for id := range servers {
			if len(r.rec.find(id)) != 1 {
				return false
			}
		}
		return true
	})
}

// A broker restart: the listener says it is disconnected and why, comes
// back by itself (its exchanges, which did not survive the restart,
// declared and bound again), counts the reconnect and hears what is
// published after it; it logs each change of state once, and never the
// password.
func TestListenerSurvivesBrokerRestart(t *testing.T) {
	b := rabbittest.Shared(t)
	t.Cleanup(func() {
		if err := b.Start(); err != nil {
			t.Errorf("start the broker again: %v", err)
		}
	})
	r := listen(t, testConfig(b))
	r.waitConnected(t)
	before := r.Status().Since

	b.Stop()
	waitUntil(t, "the listener says it is disconnected", func() bool {
		s := r.Status()
		return !s.Connected && s.LastError != ""
	})
	down := r.Status()
	t.Logf("while the broker is down: %+v", down)
	if !down.Since.After(before) {
		t.Errorf("Since %s did not move on from %s", down.Since, before)
	}

	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the listener is back", func() bool {
		s := r.Status()
		return s.Connected && s.Reconnects >= 1
	})
	server := uuid.NewString()
	publish(t, b, "nova", "versioned_notifications", versionedBody(t, "instance.delete.end", server, uuid.NewString(), "deleted"))
	waitUntil(t, "the event published after the restart is handled", func() bool { return len(r.rec.find(server)) == 1 })

	if n := r.logs.FilterMessage("lost the notifications broker; reconnecting").Len(); n != 1 {
		t.Errorf("logged the loss %d times, want once", n)
	}
	if n := r.logs.FilterMessage("reconnected to the notifications broker").Len(); n != 1 {
		t.Errorf("logged the reconnect %d times, want once", n)
	}
	if n := r.logs.FilterMessage("cannot reach the notifications broker; retrying").Len(); n != 0 {
		t.Errorf("logged %d failed attempts at warn after the loss was logged", n)
	}
	for _, e := range r.logs.FilterMessage("lost the notifications broker; reconnecting").All() {
		m := e.ContextMap()
		if m["queue"] == nil || m["attempt"] == nil || m["error"] == nil {
			t.Errorf("the loss is logged without queue, attempt or error: %v", m)
		}
	}
	r.noPassword(t)
}

// Cut off from a broker that stays up, the listener loses nothing: what
// is published meanwhile waits in its durable queue.
func TestListenerLosesNothingWhileCutOff(t *testing.T) {
	b := rabbittest.Shared(t)
	proxy := b.NewProxy(t)
	cfg := testConfig(b)
	cfg.URL = b.URLVia(proxy.Addr())
	r := listen(t, cfg)
	r.waitConnected(t)

	proxy.Cut()
	waitUntil(t, "the listener notices it is cut off", func() bool { return !r.Status().Connected })
	var servers []string
	var bodies [][]byte
	for range 5 {
		id := uuid.NewString()
		servers = append(servers, id)
		bodies = append(bodies, versionedBody(t, "instance.power_on.end", id, uuid.NewString(), "active"))
	}
	publish(t, b, "nova", "versioned_notifications", bodies...)
	if r.Status().Connected {
		t.Fatal("connected again through a cut proxy")
	}

	proxy.Restore()
	waitUntil(t, "every message published while cut off is handled", func() bool {
		for _, id := range servers {
			if len(r.rec.find(id)) != 1 {
				return false
			}
		}
		return true
	})
	if s := r.Status(); s.Reconnects < 1 || s.LastError == "" {
		t.Errorf("status after the cut: %+v", s)
	}
	r.noPassword(t)
}

// Poison never loops: malformed and ignored messages are counted,
// acknowledged and logged once per event type, and the listener goes on.
func TestListenerDropsWhatItCannotUse(t *testing.T) {
	b := rabbittest.Shared(t)
	cfg := testConfig(b)
	r := listen(t, cfg)
	r.waitConnected(t)

	noUUID := func() []byte {
		msg, _ := rabbittest.Message("instance.power_off.end", "nova-compute:host1", map[string]any{
			"nova_object.data": map[string]any{"state": "stopped"},
		})
		return rabbittest.Envelope(t, msg)
	}
	ignored := func() []byte {
		msg, _ := rabbittest.Message("service.update", "nova-compute:host1", map[string]any{"nova_object.data": map[string]any{}})
		return rabbittest.Envelope(t, msg)
	}
	last := uuid.NewString()
	publish(t, b, "nova", "versioned_notifications",
		[]byte("not json at all"),
		[]byte(`{"oslo.version": "3.0", "oslo.message": "{}"}`),
		noUUID(), noUUID(), noUUID(),
		ignored(), ignored(),
		versionedBody(t, "instance.update", last, uuid.NewString(), "active"),
	)
	// One queue, one consumer: the last is handled after the others.
	waitUntil(t, "the message after the bad ones is handled", func() bool { return len(r.rec.find(last)) == 1 })

	s := r.Status()
	if s.Malformed != 5 || s.Ignored != 2 || !s.Connected || s.Reconnects != 0 {
		t.Errorf("status %+v, want 5 malformed, 2 ignored, connected without reconnects", s)
	}
	const malformedMsg = "dropping malformed notifications of this event type (logged once)"
	if n := r.logged(malformedMsg, "instance.power_off.end"); n != 1 {
		t.Errorf("three instance events without uuid logged %d times, want once", n)
	}
	if n := r.logged(malformedMsg, ""); n != 1 {
		t.Errorf("two unreadable bodies logged %d times, want once", n)
	}
	if n := r.logged("ignoring notifications of this event type (logged once)", "service.update"); n != 1 {
		t.Errorf("two service.update logged %d times, want once", n)
	}

	// Acknowledged: once the listener is gone, nothing is back in its
	// queue for redelivery.
	r.stop()
	ch, err := b.Dial(t).Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(cfg.Queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 || q.Consumers != 0 {
		t.Errorf("queue after the listener stopped: %d messages, %d consumers; want none", q.Messages, q.Consumers)
	}
}

// The queue is bounded, dropping its oldest messages.
func TestListenerQueueIsBounded(t *testing.T) {
	b := rabbittest.Shared(t)
	cfg := testConfig(b)
	cfg.MaxLength = 3
	r := listen(t, cfg)
	r.waitConnected(t)
	r.stop()

	var servers []string
	var bodies [][]byte
	for range 5 {
		id := uuid.NewString()
		servers = append(servers, id)
		bodies = append(bodies, versionedBody(t, "instance.update", id, uuid.NewString(), "active"))
	}
	publish(t, b, "nova", "versioned_notifications", bodies...)

	r2 := listen(t, cfg) // the same queue
	waitUntil(t, "the three newest are handled", func() bool {
		for _, id := range servers[2:] {
			if len(r2.rec.find(id)) != 1 {
				return false
			}
		}
		return true
	})
	for _, id := range servers[:2] {
		if got := r2.rec.find(id); len(got) != 0 {
			t.Errorf("an oldest message was kept past x-max-length: %+v", got)
		}
	}
}

// The broker deletes the queue once nobody has consumed it for
// QueueExpires, so a replica gone for good leaves nothing growing.
func TestListenerQueueExpires(t *testing.T) {
	b := rabbittest.Shared(t)
	cfg := testConfig(b)
	cfg.QueueExpires = time.Second
	r := listen(t, cfg)
	r.waitConnected(t)
	r.stop()

	// A passive declaration counts as a use and renews the lease, so the
	// queue is looked at less often than it expires.
	conn := b.Dial(t)
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(cfg.QueueExpires + time.Second)
	defer tick.Stop()
	for {
		<-tick.C
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ch.QueueDeclarePassive(cfg.Queue, true, false, false, false, nil)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			break
		}
		ch.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the queue nobody consumes is still there after %s (last: %v)", patience, err)
		}
	}
}

// amqps: the broker's certificate is checked against CAFile, for the
// URL's host.
func TestListenerTLS(t *testing.T) {
	b := rabbittest.Shared(t)
	cfg := testConfig(b)
	cfg.URL, cfg.CAFile = b.TLSURL(), b.CAFile()
	r := listen(t, cfg)
	r.waitConnected(t)
	server := uuid.NewString()
	publish(t, b, "nova", "versioned_notifications", versionedBody(t, "instance.update", server, uuid.NewString(), "active"))
	waitUntil(t, "the event is heard over TLS", func() bool { return len(r.rec.find(server)) == 1 })

	// Another CA: the broker is not trusted.
	other := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := writeOtherCA(other); err != nil {
		t.Fatal(err)
	}
	bad := testConfig(b)
	bad.URL, bad.CAFile = b.TLSURL(), other
	rb := listen(t, bad)
	waitUntil(t, "the untrusted broker is refused", func() bool {
		return strings.Contains(rb.Status().LastError, "certificate")
	})
	if rb.Status().Connected {
		t.Error("connected to a broker whose certificate another CA signed")
	}
	rb.noPassword(t)
}

// writeOtherCA writes a CA certificate that signed nothing of the
// broker's.
func writeOtherCA(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "another test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

// Run returns soon after its context ends, whether it is connected or
// waiting to try again.
func TestListenerRunReturnsWhenCancelled(t *testing.T) {
	b := rabbittest.Shared(t)
	r := listen(t, testConfig(b))
	r.waitConnected(t)
	r.stop() // fails the test if Run does not return
	if r.Status().Connected {
		t.Error("still connected after Run returned")
	}

	cfg := testConfig(b)
	cfg.URL = "amqp://phoenix:" + rabbittest.Password + "@127.0.0.1:1/" // nobody there
	cfg.Backoff = Backoff{Min: time.Hour, Max: time.Hour}
	waiting := listen(t, cfg)
	waitUntil(t, "the first attempt failed", func() bool { return waiting.Status().LastError != "" })
	waiting.stop()
	waiting.noPassword(t)
}

// A wrong password is refused by the broker; the error says so without
// the password, right or wrong.
func TestListenerWrongPassword(t *testing.T) {
	b := rabbittest.Shared(t)
	cfg := testConfig(b)
	cfg.URL = strings.Replace(b.URL(), rabbittest.Password, "wrong-"+rabbittest.Password, 1)
	r := listen(t, cfg)
	waitUntil(t, "the broker refused the login", func() bool { return r.Status().LastError != "" })
	s := r.Status()
	if s.Connected || strings.Contains(s.LastError, "wrong-") {
		t.Errorf("status %+v", s)
	}
	r.noPassword(t)
}

func TestNewListenerRefuses(t *testing.T) {
	handle := func(context.Context, Notification) {}
	ok := Config{URL: "amqp://phoenix:" + rabbittest.Password + "@127.0.0.1:5672/", Queue: "q"}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no queue", func(c *Config) { c.Queue = "" }, "queue: a name is required"},
		{"URL that cannot be parsed", func(c *Config) { c.URL = "amqp://phoenix:" + rabbittest.Password + "@127.0.0.1:port/" }, "cannot be parsed"},
		{"URL of another scheme", func(c *Config) { c.URL = "http://phoenix:" + rabbittest.Password + "@127.0.0.1/" }, "scheme must be amqp or amqps"},
		{"URL without host", func(c *Config) { c.URL = "amqp://" }, "no host"},
		{"CA file without amqps", func(c *Config) { c.CAFile = "/etc/ssl/certs/ca-certificates.crt" }, "not amqps"},
		{"CA file that is missing", func(c *Config) {
			c.URL = strings.Replace(c.URL, "amqp:", "amqps:", 1)
			c.CAFile = "/nonexistent/ca.pem"
		}, "read CA file /nonexistent/ca.pem"},
		{"negative max length", func(c *Config) { c.MaxLength = -1 }, "max length -1"},
		{"queue expiring at once", func(c *Config) { c.QueueExpires = time.Microsecond }, "at least 1ms"},
		{"back-off min over max", func(c *Config) { c.Backoff = Backoff{Min: time.Minute, Max: time.Second} }, "backoff 1m0s to 1s"},
		{"empty exchange name", func(c *Config) { c.Exchanges = []string{"nova", ""} }, "exchanges: a name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := NewListener(cfg, handle, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewListener: %v, want an error saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), rabbittest.Password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := NewListener(ok, nil, nil); err == nil {
		t.Error("NewListener without a handler: no error")
	}
	l, err := NewListener(ok, handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		URL: ok.URL, Queue: "q",
		Exchanges: []string{"glance", "nova"}, Topics: []string{"notifications", "versioned_notifications"},
		QueueExpires: time.Hour, MaxLength: 10000, Backoff: Backoff{Min: time.Second, Max: 30 * time.Second},
	}
	if fmt.Sprint(l.cfg) != fmt.Sprint(want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", l.cfg, want)
	}
}
