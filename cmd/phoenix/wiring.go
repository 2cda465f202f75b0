package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, usageError(fmt.Errorf("--log-level: %w", err))
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.OutputPaths = []string{"stderr"}
	cfg.Sampling = nil
	return cfg.Build()
}

func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return usageError(fmt.Errorf("--output must be text or json, not %q", output))
	}
	return nil
}

// loadConfig loads the file and keeps the groups asked for.
func loadConfig(path string, groups []string, all bool) (*config.Config, []config.Group, error) {
	if path == "" {
		return nil, nil, usageError(fmt.Errorf("--config is required"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, usageError(err)
	}
	if all || len(groups) == 0 {
		return cfg, cfg.Groups, nil
	}
	var names []string
	for _, g := range cfg.Groups {
		names = append(names, g.Name)
	}
	var out []config.Group
	for _, want := range groups {
		i := slices.Index(names, want)
		if i < 0 {
			return nil, nil, usageError(fmt.Errorf("--group %s: %s has no such group (it has: %s)", want, path, strings.Join(names, ", ")))
		}
		out = append(out, cfg.Groups[i])
	}
	return cfg, out, nil
}

func connect(ctx context.Context, cloud string, log *zap.Logger) (*openstack.Cloud, error) {
	c, err := openstack.New(ctx, openstack.Options{Cloud: cloud, Logger: log})
	if err != nil {
		return nil, &exitError{code: exitNotDone, err: fmt.Errorf("connect to the cloud: %w", err)}
	}
	return c, nil
}
