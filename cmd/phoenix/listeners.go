package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/config"
)

// listeners are the daemon's HTTP servers: the one the image pipeline
// and operators reach (events, status, health) and, with
// controller.metrics_listen, one for Prometheus alone. With TLS both
// serve HTTPS with the certificate loaded last, so a reload renews it.
type listeners struct {
	scheme  string
	main    *http.Server
	mainL   net.Listener
	metrics *http.Server // nil: /metrics is on main
	metricL net.Listener
	// served receives the first error of either server.
	served chan error
}

// startListeners binds both addresses before serving either, so a busy
// port fails the start rather than half of it.
func startListeners(cfg *config.Config, listen, metricsListen string, handler, metricsHandler http.Handler, keys *daemonKeys) (*listeners, error) {
	ls := &listeners{scheme: "http", served: make(chan error, 2)}
	var tlsConfig *tls.Config
	if cfg.Controller.TLSCertFile != "" {
		ls.scheme = "https"
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: keys.certificate}
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	}
	var err error
	if ls.mainL, err = net.Listen("tcp", listen); err != nil {
		return nil, cli.UsageError(fmt.Errorf("controller.listen %s: %w", listen, err))
	}
	ls.main = newServer(handler)
	if metricsListen != "" {
		if ls.metricL, err = net.Listen("tcp", metricsListen); err != nil {
			_ = ls.mainL.Close()
			return nil, cli.UsageError(fmt.Errorf("controller.metrics_listen %s: %w", metricsListen, err))
		}
		ls.metrics = newServer(metricsHandler)
	}
	ls.serve(ls.main, ls.mainL)
	if ls.metrics != nil {
		ls.serve(ls.metrics, ls.metricL)
	}
	return ls, nil
}

func (ls *listeners) serve(srv *http.Server, l net.Listener) {
	go func() {
		if srv.TLSConfig != nil {
			ls.served <- srv.ServeTLS(l, "", "")
			return
		}
		ls.served <- srv.Serve(l)
	}()
}

// announce logs where the daemon serves.
func (ls *listeners) announce(log *zap.Logger) {
	log.Info("serving", zap.String("address", ls.mainL.Addr().String()), zap.String("scheme", ls.scheme))
	if ls.metrics != nil {
		log.Info("serving metrics", zap.String("address", ls.metricL.Addr().String()), zap.String("scheme", ls.scheme))
	}
}

// metricsURL is where Prometheus scrapes.
func (ls *listeners) metricsURL() string {
	l := ls.mainL
	if ls.metrics != nil {
		l = ls.metricL
	}
	return fmt.Sprintf("%s://%s/metrics", ls.scheme, l.Addr())
}

// shutdown stops both servers, letting requests in flight finish.
func (ls *listeners) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ls.main.Shutdown(ctx)
	if ls.metrics != nil {
		_ = ls.metrics.Shutdown(ctx)
	}
}
