package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/cmd/internal/version"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/coordination"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// connectAttempts is how many times the daemon tries to reach the cloud at
// start before it gives up.
const connectAttempts = 5

type daemonFlags struct {
	config        string
	listen        string
	metricsListen string
	poll          time.Duration
	grace         time.Duration
	replicaID     string
	retry         openstack.RetryPolicy
	// createBackoff is the first pause after the cloud refuses a create.
	createBackoff time.Duration
}

func newDaemonCommand(g *cli.Globals) *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Keep every group converging, on an interval and on security-patch events",
		Long: `daemon reconciles every group of the configuration on controller.interval
(with jitter), watches Glance for new images of each selector, and accepts
signed events on POST /v1/events. It serves /healthz, /readyz, /v1/status
and /v1/events on controller.listen, and /metrics there too unless
controller.metrics_listen gives it a listener of its own.

SIGHUP reloads the configuration: a file that fails validation is refused,
logged and shown in /v1/status, and the running configuration stays. The
webhook secrets, the TLS certificate and the notify targets (their
url_file too) are read again. Settings read only at start (cloud,
controller.listen, controller.metrics_listen, turning TLS on or off,
parallel_groups, coordination, notifications) keep their running values
until a restart; the log and /v1/status (config.restart_needed) name each
that changed.
SIGTERM or SIGINT stops: the steps in flight finish (up to --stop-grace),
no new one starts, and the next start resumes from what is on the servers.

With controller.coordination.etcd, several daemons share the groups: each
group is reconciled by one replica (named by --replica-id), which checks in
etcd before every change that it still owns the group. A stop gives the
replica's groups up at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringVar(&f.listen, "listen", "", "override controller.listen (host:port; port 0 picks one)")
	cmd.Flags().StringVar(&f.metricsListen, "metrics-listen", "", "override controller.metrics_listen (host:port; port 0 picks one)")
	cmd.Flags().DurationVar(&f.poll, "poll", 2*time.Second, "reconcile interval of a group while it is not converged")
	cmd.Flags().DurationVar(&f.grace, "stop-grace", 30*time.Second, "how long the steps in flight may take after a stop is asked for")
	cmd.Flags().DurationVar(&f.createBackoff, "create-backoff", 10*time.Second, "first pause after the cloud refuses a create (a full quota); it doubles up to the group's rollout.create_backoff_max (default 1m), never above it")
	def := openstack.DefaultRetryPolicy()
	f.retry = def
	cmd.Flags().DurationVar(&f.retry.RequestTimeout, "request-timeout", def.RequestTimeout, "how long one attempt of one cloud API request may take")
	cmd.Flags().DurationVar(&f.retry.WaitMin, "retry-wait-min", def.WaitMin, "shortest wait before a failed cloud API request is sent again")
	cmd.Flags().DurationVar(&f.retry.WaitMax, "retry-wait-max", def.WaitMax, "longest wait before a failed cloud API request is sent again (when the cloud names none)")
	cmd.Flags().StringVar(&f.replicaID, "replica-id", defaultReplicaID(), "this replica's name among those sharing the groups (controller.coordination)")
	return cmd
}

func runDaemon(ctx context.Context, out io.Writer, g *cli.Globals, f *daemonFlags) error {
	log, err := g.Logger()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg, _, err := loadConfig(f.config, nil, true)
	if err != nil {
		return err
	}
	warnOpenSecretFiles(log, daemonSecretFiles(cfg))
	listen := cfg.Controller.Listen
	if f.listen != "" {
		listen = f.listen
	}
	metricsListen := cfg.Controller.MetricsListen
	if f.metricsListen != "" {
		metricsListen = f.metricsListen
	}
	keys := &daemonKeys{}
	if err := keys.load(cfg, log); err != nil {
		return cli.UsageError(err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := daemon.NewMetrics(reg)
	build := version.Get()
	daemon.RegisterBuildInfo(reg, daemon.BuildInfo{Version: build.Version, Commit: build.Commit, GoVersion: build.GoVersion})
	log.Info("phoenix starting", zap.String("version", build.Version), zap.String("commit", build.Commit))
	if f.retry.RequestTimeout <= 0 || f.retry.WaitMin <= 0 || f.retry.WaitMax < f.retry.WaitMin {
		return cli.UsageError(fmt.Errorf("--request-timeout and --retry-wait-min must be above zero and --retry-wait-max at least --retry-wait-min"))
	}
	// A cloud that is busy at start (429s, a 503 burst past the client's
	// retries) is tried again for a while: a daemon restarted into a
	// cloud incident should come up when the cloud does, not exit. What
	// the operator got wrong (a cloud name, a password) ends it at once.
	var userAgent string
	if cfg.Controller.Coordination.Etcd != nil {
		if err := checkReplicaID(f.replicaID); err != nil {
			return cli.UsageError(err)
		}
		userAgent = "phoenix-replica/" + f.replicaID
		log = log.With(zap.String("replica", f.replicaID))
	}
	var cloud *openstack.Cloud
	for attempt := 1; ; attempt++ {
		cloud, err = openstack.New(ctx, openstack.Options{Cloud: cfg.Cloud, Logger: log, UserAgent: userAgent, Version: version.Get().Version, Retry: f.retry, OnRequest: func(r openstack.RequestRecord) {
			metrics.CloudRequest(r.Service, r.Method, r.Status, r.Duration)
		}})
		if err == nil {
			break
		}
		if openstack.IsConfigError(err) {
			return connectError(err) // a typo or a refused password stays so
		}
		if allPlaced(cfg) {
			// Every group reaches its locations by itself, each tried
			// again until it answers: the top-level cloud is not needed.
			log.Warn("cannot reach the top-level cloud; every group is placed over its own locations, so the daemon starts without it", zap.Error(err))
			break
		}
		if attempt == connectAttempts || ctx.Err() != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("connect to the cloud (%d attempts): %w", attempt, err)}
		}
		wait := min(f.retry.WaitMin<<attempt, f.retry.WaitMax)
		log.Warn("cannot connect to the cloud yet; trying again", zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	var replica *coordination.Replica
	if e := cfg.Controller.Coordination.Etcd; e != nil {
		opts, err := coordination.OptionsFromConfig(e, f.replicaID, log)
		if err != nil {
			return cli.UsageError(fmt.Errorf("%s: controller.coordination.etcd: %w", cfg.Path, err))
		}
		if replica, err = coordination.New(opts); err != nil {
			return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("connect to etcd: %w", err)}
		}
		// After the daemon stopped (its steps finished): revoking the
		// lease hands the groups to the other replicas at once.
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := replica.Close(cctx); err != nil {
				log.Warn("could not give the groups up; the others take them when the lease expires", zap.Error(err), zap.Duration("lease_ttl", opts.LeaseTTL))
			}
		}()
		log.Info("sharing the groups with other replicas through etcd", zap.Strings("endpoints", opts.Endpoints), zap.String("prefix", opts.Prefix), zap.Duration("lease_ttl", opts.LeaseTTL))
	}

	notifier := daemon.NewNotifier(cfg.Controller.Notify, log)
	defer notifier.Close()
	metrics.WatchNotices(notifier)
	progress := newEventStream(out, g.Output, cfg.Groups)
	dopts := daemon.Options{
		Log:          log,
		Sink:         controller.EventFunc(func(e controller.Event) { progress.Emit(e); notifier.Emit(e) }),
		Metrics:      metrics,
		PollInterval: f.poll,
		StopGrace:    f.grace,
		Reconciler:   controller.Options{CreateBackoff: f.createBackoff},
		Now:          clock(),
	}
	if replica != nil {
		dopts.Coordinator = replica
	}
	dopts.Placement = newLocations(cfg, openstack.Options{Logger: log, UserAgent: userAgent, Version: version.Get().Version, Retry: f.retry,
		OnRequest: func(r openstack.RequestRecord) { metrics.CloudRequest(r.Service, r.Method, r.Status, r.Duration) }}, log).of
	var services provisioner.Cloud
	if cloud != nil {
		services = cloud.Services()
	}
	d := daemon.New(services, cfg, dopts)
	metrics.Watch(d)
	if a := cfg.Controller.Notifications.AMQP; a != nil {
		// One queue a replica: each must hear every image event, and
		// wakes only the groups it owns.
		queue := a.Queue
		if replica != nil {
			queue += "-" + f.replicaID
		}
		l, err := notifications.NewListener(listenerConfig(a, queue, a.QueueExpires.D()), d.Notified, log.Named("notifications"))
		if err != nil {
			return cli.UsageError(fmt.Errorf("%s: controller.notifications.amqp: %w", cfg.Path, err))
		}
		d.Listen(l)
	}

	hopts := daemon.HandlerOptions{Metrics: reg, Log: log, Secret: keys.secret, PreviousSecret: keys.previous}
	if metricsListen != "" {
		hopts.Metrics = nil // on its own listener
	}
	ls, err := startListeners(cfg, listen, metricsListen, d.Handler(hopts), daemon.MetricsHandler(reg), keys)
	if err != nil {
		return err
	}
	ls.announce(log)
	if g.Output == "text" {
		fmt.Fprintf(out, "phoenix daemon: %d groups, serving on %s://%s (config %s)\n", len(cfg.Groups), ls.scheme, ls.mainL.Addr(), cfg.Path)
		fmt.Fprintf(out, "phoenix daemon: metrics at %s\n", ls.metricsURL())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-hup:
				next, err := config.Load(cfg.Path)
				if err == nil {
					err = keys.load(next, log)
				}
				if err != nil {
					d.Refused(err)
					continue
				}
				notifier.SetTargets(next.Controller.Notify)
				d.Reload(next)
			}
		}
	}()

	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	select {
	case err := <-ls.served:
		stopRun()
		<-runErr
		ls.shutdown()
		return fmt.Errorf("the HTTP server stopped: %w", err)
	case err := <-runErr:
		ls.shutdown()
		return err
	}
}

// defaultReplicaID is the host name and the process id: unique on a
// host, and telling an operator where the replica runs.
func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "phoenix"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// checkReplicaID refuses an id that cannot be an etcd key segment and a
// User-Agent token.
func checkReplicaID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/ \t\n\"") {
		return fmt.Errorf("--replica-id %q: expected 1 to 128 characters without slashes, spaces or quotes", id)
	}
	return nil
}
