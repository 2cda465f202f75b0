package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

// daemonKeys are the secrets the daemon serves with, read at start and
// again on every reload, so that a rotated webhook secret or a renewed
// certificate takes effect without a restart. A reload that cannot read
// one of them changes none of them.
type daemonKeys struct {
	secrets atomic.Pointer[webhookSecrets]
	cert    atomic.Pointer[tls.Certificate]
}

// webhookSecrets are the secret events are signed with and, during a
// rotation, the one being rotated out.
type webhookSecrets struct {
	current, previous []byte
}

// load reads every secret cfg names and, when all could be read, puts
// them in place. It also checks that the daemon could read each notify
// url_file, which the configuration's loader may have skipped.
func (k *daemonKeys) load(cfg *config.Config, log *zap.Logger) error {
	c := cfg.Controller
	for i, t := range c.Notify {
		if err := t.Unread(); err != nil {
			return fmt.Errorf("%s: controller.notify[%d].url_file: %w", cfg.Path, i, err)
		}
	}
	var s webhookSecrets
	var err error
	if s.current, err = readSecret(cfg, c.WebhookSecretFile, "controller.webhook_secret_file", log); err != nil {
		return err
	}
	if s.previous, err = readSecret(cfg, c.PreviousWebhookSecretFile, "controller.previous_webhook_secret_file", log); err != nil {
		return err
	}
	var cert *tls.Certificate
	if c.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("%s: controller.tls_cert_file %s and tls_key_file %s: %w", cfg.Path, c.TLSCertFile, c.TLSKeyFile, err)
		}
		cert = &pair
	}
	if s.current == nil {
		log.Warn("no controller.webhook_secret_file: POST /v1/events refuses every event")
	}
	if s.previous != nil {
		log.Info("webhook secret rotation: events signed with the previous secret are accepted until previous_webhook_secret_file is removed",
			zap.String("previous_webhook_secret_file", c.PreviousWebhookSecretFile))
	}
	k.secrets.Store(&s)
	if cert != nil {
		k.cert.Store(cert)
	}
	return nil
}

// readSecret reads one webhook secret file; none when path is empty.
func readSecret(cfg *config.Config, path, field string, log *zap.Logger) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	s, warning, err := trigger.ReadSecret(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", cfg.Path, field, err)
	}
	if warning != "" {
		log.Warn(warning, zap.String("field", field))
	}
	return s, nil
}

// secret and previous are the webhook secrets, for the event handler.
func (k *daemonKeys) secret() []byte {
	if s := k.secrets.Load(); s != nil {
		return s.current
	}
	return nil
}

func (k *daemonKeys) previous() []byte {
	if s := k.secrets.Load(); s != nil {
		return s.previous
	}
	return nil
}

// certificate is tls.Config.GetCertificate: every handshake gets the
// certificate loaded last.
func (k *daemonKeys) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := k.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate loaded")
}
