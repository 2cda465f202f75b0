package notifications

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// Listener consumes Nova's and Glance's notifications from a queue of its
// own and hands each one Phoenix acts on to a handler.
type Listener struct {
	cfg    Config
	ep     endpoint
	handle func(context.Context, Notification)
	log    *zap.Logger

	mu            sync.Mutex
	status        Status
	everConnected bool
	logged        map[string]bool // dropped kinds already logged
}

const (
	// prefetch bounds the messages the broker sends before they are
	// acknowledged: enough to keep the handler busy, few to redeliver if
	// the connection drops.
	prefetch = 32
	// dialTimeout bounds the TCP connect and the TLS and AMQP handshakes.
	dialTimeout = 10 * time.Second
	// closeTimeout bounds the close handshake when Run stops.
	closeTimeout = 5 * time.Second
)

// NewListener checks cfg and returns a listener that calls handle, in
// the order of delivery and one at a time, with each notification
// Phoenix acts on. handle should return quickly (poke a worker, do not
// reconcile in it): messages wait for it. A nil log logs nothing.
func NewListener(cfg Config, handle func(context.Context, Notification), log *zap.Logger) (*Listener, error) {
	if handle == nil {
		return nil, errors.New("notifications listener: a handler is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("notifications listener: %w", err)
	}
	ep, err := parseEndpoint(cfg.URL, cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("notifications listener: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Listener{
		cfg:    cfg,
		ep:     ep,
		handle: handle,
		log:    log.With(zap.String("queue", cfg.Queue)),
		status: Status{Since: time.Now(), Handled: map[string]int{}},
		logged: map[string]bool{},
	}, nil
}

// Run listens until ctx is done, then closes the connection and returns
// nil. Call it once. Whenever the connection or its channel is lost, or cannot be had
// (a refused dial, a broker restarting, a declaration refused), Status
// says so and Run tries again after a jittered, growing back-off.
func (l *Listener) Run(ctx context.Context) error {
	failures := 0 // attempts in a row that ended without a consumer
	for {
		consumed, err := l.session(ctx)
		if err == nil {
			err = errors.New("the session ended") // not expected: every return says why
		}
		if ctx.Err() != nil {
			l.setDisconnected(time.Now(), "")
			return nil
		}
		if consumed {
			failures = 0
		}
		failures++
		text := l.ep.scrub(err.Error())
		wasConnected := l.setDisconnected(time.Now(), text)
		wait := l.cfg.Backoff.delay(failures, rand.Float64())
		fields := []zap.Field{zap.Int("attempt", failures), zap.String("error", text), zap.Duration("retry_in", wait)}
		switch {
		case wasConnected:
			l.log.Warn("lost the notifications broker; reconnecting", fields...)
		case failures == 1:
			l.log.Warn("cannot reach the notifications broker; retrying", fields...)
		default:
			l.log.Debug("notifications broker still unreachable", fields...)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// session connects, declares, consumes until the connection or channel is
// lost or ctx is done, and says whether it got as far as consuming.
func (l *Listener) session(ctx context.Context) (consumed bool, err error) {
	conn, err := l.dial(ctx)
	if err != nil {
		return false, fmt.Errorf("connect to %s: %w", l.ep.redacted, err)
	}
	defer func() { conn.CloseDeadline(time.Now().Add(closeTimeout)) }()
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))

	ch, err := l.declare(conn)
	if err != nil {
		return false, err
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return false, fmt.Errorf("set prefetch on queue %s: %w", l.cfg.Queue, err)
	}
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancelled := ch.NotifyCancel(make(chan string, 1))
	deliveries, err := ch.Consume(l.cfg.Queue, "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume queue %s: %w", l.cfg.Queue, err)
	}

	if l.setConnected(time.Now()) {
		s := l.Status()
		l.log.Info("reconnected to the notifications broker", zap.Int("reconnects", s.Reconnects))
	} else {
		l.log.Info("listening for notifications", zap.String("broker", l.ep.redacted),
			zap.Strings("exchanges", l.cfg.Exchanges), zap.Strings("topics", l.cfg.Topics))
	}

	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case e, ok := <-connClosed:
			return true, closed("connection to "+l.ep.redacted, e, ok)
		case e, ok := <-chClosed:
			return true, closed("channel of queue "+l.cfg.Queue, e, ok)
		case <-cancelled:
			// The queue was deleted under the consumer: declare it again.
			return true, fmt.Errorf("queue %s: the broker cancelled the consumer (queue deleted?)", l.cfg.Queue)
		case d, ok := <-deliveries:
			if !ok {
				return true, l.lostReason(connClosed, chClosed)
			}
			l.deliver(ctx, d)
			if err := d.Ack(false); err != nil {
				return true, fmt.Errorf("acknowledge a message on queue %s: %w", l.cfg.Queue, err)
			}
		}
	}
}

// closed turns a close notification into an error; e is nil when the
// library closed the notification channel without a reason.
func closed(what string, e *amqp.Error, ok bool) error {
	if !ok || e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

// lostReason says why deliveries stopped, from whichever close
// notification came with them.
func (l *Listener) lostReason(connClosed, chClosed <-chan *amqp.Error) error {
	select {
	case e, ok := <-connClosed:
		return closed("connection to "+l.ep.redacted, e, ok)
	case e, ok := <-chClosed:
		return closed("channel of queue "+l.cfg.Queue, e, ok)
	default:
		return fmt.Errorf("queue %s: deliveries stopped", l.cfg.Queue)
	}
}

func (l *Listener) dial(ctx context.Context) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("phoenix notifications " + l.cfg.Queue)
	cfg := amqp.Config{
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: dialTimeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshakes; the library clears it once open.
			if err := c.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	if l.ep.tls != nil {
		cfg.TLSClientConfig = l.ep.tls.Clone()
	}
	return amqp.DialConfig(l.ep.url, cfg)
}

// declare makes sure the exchanges, the queue and its bindings exist, and
// returns the channel to consume on.
func (l *Listener) declare(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open a channel: %w", err)
	}
	for _, ex := range l.cfg.Exchanges {
		if ch, err = l.declareExchange(conn, ch, ex); err != nil {
			return nil, err
		}
	}
	args := amqp.Table{
		"x-expires":    l.cfg.QueueExpires.Milliseconds(),
		"x-max-length": int64(l.cfg.MaxLength),
		"x-overflow":   "drop-head",
	}
	_, err = ch.QueueDeclare(l.cfg.Queue, true, false, false, false, args)
	if isPreconditionFailed(err) {
		// The queue exists with other arguments (an older configuration):
		// use it as it is rather than delete what it holds; an operator
		// who wants the new arguments deletes the queue.
		l.log.Warn("the notifications queue exists with other arguments; using it as it is", zap.String("error", l.ep.scrub(err.Error())))
		if ch, err = conn.Channel(); err != nil {
			return nil, fmt.Errorf("open a channel: %w", err)
		}
		_, err = ch.QueueDeclarePassive(l.cfg.Queue, true, false, false, false, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("declare queue %s: %w", l.cfg.Queue, err)
	}
	for _, ex := range l.cfg.Exchanges {
		for _, topic := range l.cfg.Topics {
			key := topic + ".info"
			if err := ch.QueueBind(l.cfg.Queue, key, ex, false, nil); err != nil {
				return nil, fmt.Errorf("bind queue %s to exchange %s with key %s: %w", l.cfg.Queue, ex, key, err)
			}
		}
	}
	return ch, nil
}

// declareExchange declares a control exchange the way oslo.messaging
// declares it with amqp_durable_queues = false, its default: topic, not
// durable, not auto-delete. That creates it when the service has not
// published yet (Glance declares its exchange only with its first
// notification), so the queue can be bound and nothing published from
// then on is missed.
//
// A service with amqp_durable_queues = true declares it durable, and
// RabbitMQ refuses a declaration with another durability with 406
// PRECONDITION_FAILED, closing the channel. Then the exchange exists,
// which is all the listener needs: it checks so with a passive
// declaration on a fresh channel and goes on with that channel.
// (oslo.messaging's publisher copes the other way round: on the same 406
// it declares the exchange non-durable.)
func (l *Listener) declareExchange(conn *amqp.Connection, ch *amqp.Channel, name string) (*amqp.Channel, error) {
	err := ch.ExchangeDeclare(name, "topic", false, false, false, false, nil)
	if isPreconditionFailed(err) {
		l.log.Debug("exchange declared otherwise by its service; using it as it is",
			zap.String("exchange", name), zap.String("error", l.ep.scrub(err.Error())))
		if ch, err = conn.Channel(); err != nil {
			return nil, fmt.Errorf("open a channel: %w", err)
		}
		err = ch.ExchangeDeclarePassive(name, "topic", false, false, false, false, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return ch, nil
}

func isPreconditionFailed(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed
}

// deliver decodes one message and hands it on, or counts and drops it,
// logging the first of each kind and event type.
func (l *Listener) deliver(ctx context.Context, d amqp.Delivery) {
	n, err := Decode(d.Body)
	if err == nil {
		l.handle(ctx, n)
		l.countHandled(n.EventType)
		return
	}
	malformed := !errors.Is(err, ErrIgnored)
	fields := []zap.Field{
		zap.String("exchange", d.Exchange),
		zap.String("routing_key", d.RoutingKey),
		zap.String("event_type", n.EventType),
		zap.String("error", l.ep.scrub(err.Error())),
	}
	if !l.countDropped(malformed, n.EventType) {
		l.log.Debug("dropped a notification", fields...)
		return
	}
	if malformed {
		l.log.Warn("dropping malformed notifications of this event type (logged once)", fields...)
	} else {
		l.log.Info("ignoring notifications of this event type (logged once)", fields...)
	}
}
