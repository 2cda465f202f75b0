package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/notifications"
)

// listenerConfig is the listener's configuration from the file's block,
// on queue.
func listenerConfig(a *config.AMQP, queue string, expires time.Duration) notifications.Config {
	return notifications.Config{URL: a.URL, CAFile: a.CAFile, Exchanges: a.Exchanges, Topics: a.Topics, Queue: queue, QueueExpires: expires}
}

// wakeOnNotifications has a one-shot run's groups woken by the cloud's
// notifications, when the configuration names a broker: on a queue of
// the run's own (the daemon's stays the daemon's), which the broker drops
// a minute after the run. stop ends the listener.
func wakeOnNotifications(ctx context.Context, cfg *config.Config, opts *controller.Options, log *zap.Logger) (stop func(), err error) {
	a := cfg.Controller.Notifications.AMQP
	if a == nil {
		return func() {}, nil
	}
	opts.Wakes = controller.NewWakes()
	queue := fmt.Sprintf("%s-run-%.8s", a.Queue, opts.RolloutID)
	l, err := notifications.NewListener(listenerConfig(a, queue, time.Minute), opts.Wakes.Notified, log.Named("notifications"))
	if err != nil {
		return nil, cli.UsageError(fmt.Errorf("%s: controller.notifications.amqp: %w", cfg.Path, err))
	}
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := l.Run(lctx); err != nil && lctx.Err() == nil {
			log.Warn("the notification listener stopped; polling goes on", zap.Error(err))
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}, nil
}
