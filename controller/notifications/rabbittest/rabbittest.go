// Package rabbittest runs a real RabbitMQ for tests: the broker Debian
// ships (examples/rabbitmq/install.sh installs it), as a private node on
// loopback, in a temporary directory, with its own user, ports and epmd.
// A test can stop and start it again (same ports, same data) to see what
// its code does while the broker is away, cut a client's connection
// through a Proxy while the broker stays up, and publish notifications
// the way oslo.messaging does. Only tests import it.
//
// A real broker rather than a fake speaking AMQP: what the listener must
// get right is RabbitMQ's own behaviour — 406 on an exchange declared
// with another durability, a queue that survives a restart but loses its
// bindings to exchanges that did not, the close a clean shutdown sends.
//
// Private, because a development cloud's RabbitMQ may be running on the
// same machine (rabbit@localhost, 127.0.0.1:5672, epmd on 4369): the test
// node has its own node name, takes free ports for AMQP, AMQPS and Erlang
// distribution, and runs its own epmd on a free port (ERL_EPMD_PORT),
// started by the test and killed by it, with every Erlang VM of the node
// told not to start one of its own (-start_epmd false). Nothing of it is
// left behind: the broker and epmd die with the test binary (Pdeathsig)
// if the cleanups do not run.
//
// One broker per test binary: it takes seconds to boot, so TestMain calls
// Run, and tests share the broker that Shared starts on first use.
//
// Without the broker the tests are skipped, unless
// PHOENIX_REQUIRE_RABBITMQ=1 (as CI sets) makes that a failure.
package rabbittest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// EnvServer names the rabbitmq-server start script to run.
	EnvServer = "PHOENIX_RABBITMQ_SERVER"
	// EnvRequire, set to 1, fails a test that would skip for want of
	// RabbitMQ.
	EnvRequire = "PHOENIX_REQUIRE_RABBITMQ"
)

// The broker's only user; the password is distinctive so that a test
// can look for it in logs and errors.
const (
	User     = "phoenix"
	Password = "rabbit-pw-for-tests-7d1f"
)

// Patience bounds a start and a stop. The broker boots in about ten
// seconds on a busy two-core machine; anything near this is a failure.
const Patience = 2 * time.Minute

// debianServer is the start script itself; /usr/sbin/rabbitmq-server is a
// wrapper that switches to the rabbitmq user and its files.
const debianServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// Broker is a private RabbitMQ node.
type Broker struct {
	server, epmd string // the binaries
	dir          string
	node         string
	amqpPort     int
	tlsPort      int
	distPort     int
	epmdPort     int

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has exited
	epmdCmd  *exec.Cmd
	epmdDone chan struct{}
	starts   int
}

var shared struct {
	sync.Mutex
	inRun  bool
	once   sync.Once
	broker *Broker
	err    error
}

// Run runs the tests of a package and then stops the shared broker, if
// one was started; call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(rabbittest.Run(m)) }
func Run(m *testing.M) int {
	shared.Lock()
	shared.inRun = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	b := shared.broker
	shared.Unlock()
	if b != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "rabbittest: the broker's log (%s):\n%s\n", b.logPath(), tail(b.log(), 6000))
		}
		if err := b.close(); err != nil {
			fmt.Fprintf(os.Stderr, "rabbittest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the package's broker, starting it on the first call.
// It skips the test when RabbitMQ is not installed (fails it when
// PHOENIX_REQUIRE_RABBITMQ=1).
func Shared(t testing.TB) *Broker {
	t.Helper()
	server, epmd := binaries(t)
	shared.Lock()
	inRun := shared.inRun
	shared.Unlock()
	if !inRun {
		t.Fatal("rabbittest.Shared needs TestMain to call rabbittest.Run, which stops the broker")
	}
	shared.once.Do(func() {
		start := time.Now()
		b, err := newBroker(server, epmd)
		shared.Lock()
		shared.broker, shared.err = b, err
		shared.Unlock()
		if err == nil {
			t.Logf("rabbittest: RabbitMQ node %s up on 127.0.0.1:%d after %s", b.node, b.amqpPort, time.Since(start).Round(time.Millisecond))
		}
	})
	shared.Lock()
	defer shared.Unlock()
	if shared.err != nil {
		t.Fatalf("start RabbitMQ: %v", shared.err)
	}
	return shared.broker
}

// binaries finds rabbitmq-server and epmd, or skips (fails, when
// required) the test.
func binaries(t testing.TB) (server, epmd string) {
	t.Helper()
	server = os.Getenv(EnvServer)
	if server != "" {
		if _, err := exec.LookPath(server); err != nil {
			// Named on purpose, so not a reason to skip.
			t.Fatalf("%s=%s: %v", EnvServer, server, err)
		}
	} else if _, err := exec.LookPath(debianServer); err == nil {
		server = debianServer
	}
	epmd, err := exec.LookPath("epmd")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/erlang/erts-*/bin/epmd")
		if len(matches) > 0 {
			epmd = matches[len(matches)-1]
		}
	}
	if server != "" && epmd != "" {
		return server, epmd
	}
	msg := fmt.Sprintf("no RabbitMQ (%s, or set %s; run examples/rabbitmq/install.sh) or no epmd", debianServer, EnvServer)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s, and %s=1", msg, EnvRequire)
	}
	t.Skip(msg)
	return "", ""
}

// newBroker lays out a node in a new directory and starts it. The ports
// are free when chosen and may be taken before the node binds them; then
// the node exits, and it is tried again on other ports.
func newBroker(server, epmd string) (*Broker, error) {
	dir, err := os.MkdirTemp("", "phoenix-rabbittest-")
	if err != nil {
		return nil, err
	}
	b := &Broker{
		server: server,
		epmd:   epmd,
		dir:    dir,
		node:   fmt.Sprintf("phoenix-test-%d@localhost", os.Getpid()),
	}
	for _, sub := range []string{"home", "mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, b.cleanupAfter(err)
		}
	}
	if err := writeCerts(dir); err != nil {
		return nil, b.cleanupAfter(err)
	}
	for _, f := range []string{"enabled_plugins", "rabbitmq-env.conf"} {
		// Empty: no plugins; no environment from /etc/rabbitmq.
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			return nil, b.cleanupAfter(err)
		}
	}
	for try := 1; ; try++ {
		if err := b.choosePorts(); err != nil {
			return nil, b.cleanupAfter(err)
		}
		err := b.startEpmd()
		if err == nil {
			err = b.Start()
		}
		if err == nil {
			return b, nil
		}
		b.stopEpmd()
		if !errors.Is(err, errPortTaken) || try == 5 {
			return nil, b.cleanupAfter(err)
		}
	}
}

var errPortTaken = errors.New("a port was taken")

func (b *Broker) cleanupAfter(err error) error {
	if cerr := b.close(); cerr != nil {
		return errors.Join(err, cerr)
	}
	return err
}

func (b *Broker) choosePorts() error {
	ports := make([]int, 4)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close() // held until all four are chosen, so they differ
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	b.amqpPort, b.tlsPort, b.distPort, b.epmdPort = ports[0], ports[1], ports[2], ports[3]
	return os.WriteFile(filepath.Join(b.dir, "rabbitmq.conf"), []byte(b.config()), 0o600)
}

func (b *Broker) config() string {
	return fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
listeners.ssl.default = 127.0.0.1:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
default_user = %s
default_pass = %s
disk_free_limit.absolute = 1MB
log.console = false
log.file.level = info
`, b.amqpPort, b.tlsPort, b.CAFile(), filepath.Join(b.dir, "server.pem"), filepath.Join(b.dir, "server.key"), User, Password)
}

// env is the node's environment: the test's, less anything that would
// point it at another node's settings, plus its own.
func (b *Broker) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+filepath.Join(b.dir, "home"), // the Erlang cookie
		"RABBITMQ_NODENAME="+b.node,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(b.dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(b.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(b.dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(b.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.dir, "rabbit.pid"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(b.distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(b.epmdPort),
		// Every Erlang VM of the node (the broker, and the one-off VMs it
		// runs to check on epmd) uses the test's epmd and never starts a
		// daemon of its own, which nothing would stop.
		"ERL_ZFLAGS=-start_epmd false",
		// With input allowed the start script execs the VM instead of
		// running it in the background: the VM stays the test's child, so
		// Pdeathsig reaches it. -noinput then keeps the shell away.
		"RABBITMQ_ALLOW_INPUT=1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput",
	)
}

// startEpmd runs the node's own epmd in the foreground and waits until it
// accepts connections.
func (b *Broker) startEpmd() error {
	cmd := exec.Command(b.epmd, "-port", strconv.Itoa(b.epmdPort), "-address", "127.0.0.1")
	out, err := os.Create(filepath.Join(b.dir, "epmd.log"))
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start epmd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	b.mu.Lock()
	b.epmdCmd, b.epmdDone = cmd, done
	b.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.epmdPort))
	err = waitFor(done, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err != nil {
		b.stopEpmd()
		log, _ := os.ReadFile(filepath.Join(b.dir, "epmd.log"))
		return fmt.Errorf("epmd on port %d: %w (%w); its log: %s", b.epmdPort, err, errPortTaken, log)
	}
	return nil
}

func (b *Broker) stopEpmd() {
	b.mu.Lock()
	cmd, done := b.epmdCmd, b.epmdDone
	b.epmdCmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Start starts the broker (again, after Stop: same ports, same data) and
// waits until it accepts AMQP connections with the test's credentials.
// Starting a running broker does nothing.
func (b *Broker) Start() error {
	b.mu.Lock()
	if b.cmd != nil {
		b.mu.Unlock()
		return nil
	}
	b.starts++
	logPath := filepath.Join(b.dir, fmt.Sprintf("server-%d.log", b.starts))
	b.mu.Unlock()

	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(b.server)
	cmd.Dir = b.dir
	cmd.Env = b.env()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", b.server, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	b.mu.Lock()
	b.cmd, b.done = cmd, done
	b.mu.Unlock()

	err = waitFor(done, func() bool { return b.dial(b.URL()) == nil && b.dialTLS() == nil })
	if err != nil {
		b.Stop()
		logText := b.log()
		if bytes.Contains(logText, []byte("eaddrinuse")) || bytes.Contains(logText, []byte("address already in use")) {
			return fmt.Errorf("%w: %s", errPortTaken, tail(logText, 1000))
		}
		return fmt.Errorf("RabbitMQ node %s: %w; its log:\n%s", b.node, err, tail(logText, 3000))
	}
	return nil
}

// waitFor polls ready until it holds, the process ends (exited closed),
// or Patience has passed.
func waitFor(exited <-chan struct{}, ready func() bool) error {
	deadline := time.NewTimer(Patience)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-exited:
			return errors.New("it exited before it was ready")
		case <-deadline.C:
			return fmt.Errorf("not ready after %s", Patience)
		case <-tick.C:
		}
	}
}

func (b *Broker) dial(u string) error {
	c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	return c.Close()
}

func (b *Broker) dialTLS() error {
	tc, err := TLSConfig(b.CAFile())
	if err != nil {
		return err
	}
	c, err := amqp.DialConfig(b.TLSURL(), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second), TLSClientConfig: tc})
	if err != nil {
		return err
	}
	return c.Close()
}

// Stop shuts the broker down as a service manager would (SIGTERM: it
// closes its connections with CONNECTION_FORCED and writes its queues)
// and waits until it has exited; it is killed if that takes more than
// Patience. Stopping a stopped broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(Patience):
		cmd.Process.Kill()
		<-done
	}
}

// close stops the broker and its epmd and removes its directory.
func (b *Broker) close() error {
	b.Stop()
	b.stopEpmd()
	return os.RemoveAll(b.dir)
}

// URL is the broker's AMQP URL, with the test user's credentials.
func (b *Broker) URL() string {
	return b.url("amqp", "127.0.0.1", b.amqpPort)
}

// TLSURL is the broker's AMQPS URL; its certificate is for localhost and
// 127.0.0.1, signed by the CA in CAFile.
func (b *Broker) TLSURL() string {
	return b.url("amqps", "localhost", b.tlsPort)
}

// URLVia is the broker's AMQP URL with another address (a Proxy's).
func (b *Broker) URLVia(addr string) string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(User, Password), Host: addr, Path: "/"}
	return u.String()
}

func (b *Broker) url(scheme, host string, port int) string {
	return (&url.URL{
		Scheme: scheme,
		User:   url.UserPassword(User, Password),
		Host:   net.JoinHostPort(host, strconv.Itoa(port)),
		Path:   "/",
	}).String()
}

// Addr is the broker's AMQP address, host:port.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.amqpPort))
}

// CAFile is the PEM file of the CA that signed the broker's certificate.
func (b *Broker) CAFile() string { return filepath.Join(b.dir, "ca.pem") }

func (b *Broker) logPath() string {
	return filepath.Join(b.dir, "log", b.node+".log")
}

// log is the broker's own log file, and what its start scripts printed.
func (b *Broker) log() []byte {
	var out []byte
	b.mu.Lock()
	starts := b.starts
	b.mu.Unlock()
	for i := 1; i <= starts; i++ {
		s, _ := os.ReadFile(filepath.Join(b.dir, fmt.Sprintf("server-%d.log", i)))
		out = append(out, s...)
	}
	l, _ := os.ReadFile(b.logPath())
	return append(out, l...)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Dial connects to the broker as the test user; the connection is closed
// when the test ends.
func (b *Broker) Dial(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(b.URL(), amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Publish sends bodies to exchange as an oslo.messaging notifier does with
// amqp_durable_queues = false (the default): it declares the exchange
// (topic, not durable, not auto-delete) and the queue oslo declares so
// that nothing is lost before a consumer comes (named after the routing
// key, bound with it), then publishes each body with routing key
// <topic>.info, as JSON, and waits for the broker's confirms. Each call
// uses a connection of its own.
func (b *Broker) Publish(ctx context.Context, exchange, topic string, bodies ...[]byte) error {
	return b.publish(ctx, false, exchange, topic, bodies)
}

// PublishDurable is Publish as a service with amqp_durable_queues = true
// does it: the exchange and the queue declared durable.
func (b *Broker) PublishDurable(ctx context.Context, exchange, topic string, bodies ...[]byte) error {
	return b.publish(ctx, true, exchange, topic, bodies)
}

func (b *Broker) publish(ctx context.Context, durable bool, exchange, topic string, bodies [][]byte) error {
	c, err := amqp.DialConfig(b.URL(), amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("dial RabbitMQ: %w", err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return fmt.Errorf("open a channel: %w", err)
	}
	key := topic + ".info"
	if err := ch.ExchangeDeclare(exchange, "topic", durable, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	if _, err := ch.QueueDeclare(key, durable, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %s: %w", key, err)
	}
	if err := ch.QueueBind(key, key, exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", key, exchange, err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	for _, body := range bodies {
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp.Publishing{
			ContentType:     "application/json",
			ContentEncoding: "utf-8",
			DeliveryMode:    amqp.Persistent,
			Body:            body,
		})
		if err != nil {
			return fmt.Errorf("publish to %s with key %s: %w", exchange, key, err)
		}
		// Confirmed: the broker has routed it to every bound queue.
		if ok, err := conf.WaitContext(ctx); err != nil || !ok {
			return fmt.Errorf("publish to %s with key %s: not confirmed (%v)", exchange, key, err)
		}
	}
	return nil
}

// Ctl runs rabbitmqctl (beside the start script) against the node, as an
// operator would to add a user or set permissions, and fails the test if
// it fails.
func (b *Broker) Ctl(t testing.TB, args ...string) {
	t.Helper()
	ctl := filepath.Join(filepath.Dir(b.server), "rabbitmqctl")
	cmd := exec.Command(ctl, append([]string{"-q", "-n", b.node}, args...)...)
	cmd.Env = b.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// URLAs is the broker's AMQP URL for another user.
func (b *Broker) URLAs(user, password string) string {
	return (&url.URL{Scheme: "amqp", User: url.UserPassword(user, password), Host: b.Addr(), Path: "/"}).String()
}
