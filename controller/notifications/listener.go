package notifications

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
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

	ch, missing, err := l.declare(conn)
	if err != nil {
		return false, err
	}
	l.setUnbound(missing)
	var recheck <-chan time.Time
	if len(missing) > 0 {
		l.log.Warn("exchanges missing and not Phoenix's to create: their notifications are heard once they exist (the service creates its exchange with its first notification)",
			zap.Strings("exchanges", missing), zap.Duration("check_every", l.cfg.Backoff.Max))
		ticker := time.NewTicker(l.cfg.Backoff.Max)
		defer ticker.Stop()
		recheck = ticker.C
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
		case <-recheck:
			if missing, err = l.bindMissing(conn, ch, missing); err != nil {
				return true, err
			}
			if len(missing) == 0 {
				recheck = nil
			}
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

// declare makes sure the queue exists and is bound to every exchange
// that exists, and returns the channel to consume on and the exchanges
// still missing.
func (l *Listener) declare(conn *amqp.Connection) (*amqp.Channel, []string, error) {
	var missing []string
	for _, ex := range l.cfg.Exchanges {
		there, err := l.declareExchange(conn, ex)
		if err != nil {
			return nil, nil, err
		}
		if !there {
			missing = append(missing, ex)
		}
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open a channel: %w", err)
	}
	args := amqp.Table{
		"x-expires":    l.cfg.QueueExpires.Milliseconds(),
		"x-max-length": int64(l.cfg.MaxLength),
		"x-overflow":   "drop-head",
	}
	_, err = ch.QueueDeclare(l.cfg.Queue, true, false, false, false, args)
	if isCode(err, amqp.PreconditionFailed) {
		// The queue exists with other arguments (an older configuration):
		// use it as it is rather than delete what it holds; an operator
		// who wants the new arguments deletes the queue.
		l.log.Warn("the notifications queue exists with other arguments; using it as it is", zap.String("error", l.ep.scrub(err.Error())))
		if ch, err = conn.Channel(); err != nil {
			return nil, nil, fmt.Errorf("open a channel: %w", err)
		}
		_, err = ch.QueueDeclarePassive(l.cfg.Queue, true, false, false, false, nil)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("declare queue %s: %w", l.cfg.Queue, err)
	}
	for _, ex := range l.cfg.Exchanges {
		if !slices.Contains(missing, ex) {
			if err := l.bind(ch, ex); err != nil {
				return nil, nil, err
			}
		}
	}
	return ch, missing, nil
}

// bind binds the queue to <topic>.info of each topic on exchange ex.
func (l *Listener) bind(ch *amqp.Channel, ex string) error {
	for _, topic := range l.cfg.Topics {
		key := topic + ".info"
		if err := ch.QueueBind(l.cfg.Queue, key, ex, false, nil); err != nil {
			return fmt.Errorf("bind queue %s to exchange %s with key %s: %w", l.cfg.Queue, ex, key, err)
		}
	}
	return nil
}

// declareExchange makes sure a control exchange exists, and says whether
// it does. It declares it the way oslo.messaging does with
// amqp_durable_queues = false, its default: topic, not durable, not
// auto-delete. That creates it when the service has not published yet
// (Glance declares its exchange only with its first notification), so
// nothing published from then on is missed.
//
// Two refusals mean the exchange may exist all the same, which is all the
// listener needs: 406 PRECONDITION_FAILED, when the service declared it
// durable (amqp_durable_queues = true), and 403 ACCESS_REFUSED, when
// Phoenix's user may not configure it (the least rights it needs do not
// let it). A passive declaration then says whether it is there; one that
// is not (404) is bound once it appears. Each step has a channel of its
// own: a refusal closes the channel it came on.
func (l *Listener) declareExchange(conn *amqp.Connection, name string) (bool, error) {
	try := func(passive bool) error {
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open a channel: %w", err)
		}
		defer ch.Close()
		if passive {
			return ch.ExchangeDeclarePassive(name, "topic", false, false, false, false, nil)
		}
		return ch.ExchangeDeclare(name, "topic", false, false, false, false, nil)
	}
	err := try(false)
	if isCode(err, amqp.PreconditionFailed, amqp.AccessRefused) {
		l.log.Debug("exchange declared otherwise by its service, or not Phoenix's to declare; checking it is there",
			zap.String("exchange", name), zap.String("error", l.ep.scrub(err.Error())))
		err = try(true)
		if isCode(err, amqp.NotFound) {
			return false, nil
		}
	}
	if err != nil {
		return false, fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return true, nil
}

// bindMissing binds the queue to the exchanges in missing that exist by
// now, on the consuming channel, and returns those still missing.
func (l *Listener) bindMissing(conn *amqp.Connection, ch *amqp.Channel, missing []string) ([]string, error) {
	var still []string
	for _, ex := range missing {
		there, err := l.declareExchange(conn, ex)
		if err != nil {
			return nil, err
		}
		if !there {
			still = append(still, ex)
			continue
		}
		if err := l.bind(ch, ex); err != nil {
			return nil, err
		}
		l.log.Info("exchange now there: listening to it too", zap.String("exchange", ex))
	}
	l.setUnbound(still)
	return still, nil
}

func isCode(err error, codes ...int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && slices.Contains(codes, ae.Code)
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
