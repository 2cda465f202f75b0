package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/coordination"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/controller/preflight"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

type configCheckFlags struct {
	config  string
	cloud   bool
	timeout time.Duration
}

func newConfigCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration file",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newConfigCheckCommand(g))
	return cmd
}

func newConfigCheckCommand(g *cli.Globals) *cobra.Command {
	f := &configCheckFlags{}
	cmd := &cobra.Command{
		Use:   "check --config FILE [--cloud]",
		Short: "Check a configuration before anything runs it",
		Long: `check loads and validates the file exactly as the daemon does at start — the
fields, the files it names (user data, webhook secret, TLS pair, etcd and
broker settings) — without touching the cloud, and prints "ok" with the
groups it found, or every problem, each naming the file and the field.

With --cloud it also connects and asks the cloud for every name the file
gives it: flavors, networks, image selectors, key pairs, security groups,
server groups, load-balancer pools and subnets, floating IPs and their
pools, each through the same call the reconciler makes. Nothing is changed.

Exit 0: the file is fit to run. Exit 2: it is not; nothing was done.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigCheck(cmd.Context(), cmd.OutOrStdout(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().BoolVar(&f.cloud, "cloud", false, "also check that every name the file gives the cloud resolves there")
	cmd.Flags().DurationVar(&f.timeout, "timeout", time.Minute, "with --cloud: give up asking the cloud after this long")
	return cmd
}

// checkResult is what `config check` found, as -o json prints it.
type checkResult struct {
	Config  string         `json:"config"`
	OK      bool           `json:"ok"`
	Cloud   string         `json:"cloud,omitempty"`
	Groups  []groupSummary `json:"groups"`
	Servers int            `json:"servers"`
	// Problems are the file's own: fields, and files it names.
	Problems []checkProblem `json:"problems"`
	// CloudChecked is true with --cloud; NamesChecked and Unresolved
	// are then what the cloud was asked and did not resolve.
	CloudChecked bool                   `json:"cloud_checked"`
	NamesChecked int                    `json:"names_checked,omitempty"`
	Unresolved   []preflight.Unresolved `json:"unresolved,omitempty"`
}

type groupSummary struct {
	Name  string       `json:"name"`
	Count int          `json:"count"`
	Image imageSummary `json:"image"`
}

type imageSummary struct {
	ID         string            `json:"id,omitempty"`
	Name       string            `json:"name,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Tags       []string          `json:"tags,omitempty"`
	Newest     bool              `json:"newest"`
}

type checkProblem struct {
	Field   string `json:"field,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func runConfigCheck(ctx context.Context, out io.Writer, g *cli.Globals, f *configCheckFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	log, err := cli.NewLogger(g.LogLevel)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if f.config == "" {
		return cli.UsageError(fmt.Errorf("--config is required"))
	}
	res := checkResult{Config: f.config, Groups: []groupSummary{}, Problems: []checkProblem{}}
	cfg, err := config.Load(f.config)
	if err != nil {
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			return cli.UsageError(err)
		}
		for _, p := range cerr.Problems {
			res.Problems = append(res.Problems, checkProblem{Field: p.Path, Line: p.Line, Message: p.Message})
		}
		return reportCheck(out, g.Output, res)
	}
	res.Cloud = cfg.Cloud
	for _, grp := range cfg.Groups {
		res.Servers += grp.Count
		im := grp.Image
		res.Groups = append(res.Groups, groupSummary{Name: grp.Name, Count: grp.Count,
			Image: imageSummary{ID: im.ID, Name: im.Name, Properties: im.Properties, Tags: im.Tags, Newest: im.Newest}})
	}
	res.Problems = append(res.Problems, startChecks(cfg)...)
	if f.cloud && len(res.Problems) == 0 {
		cloud, err := connect(ctx, cfg.Cloud, log)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		rep := preflight.Check(cctx, cfg, cloud.Services(), cloud)
		res.CloudChecked, res.NamesChecked, res.Unresolved = true, rep.Checked, rep.Unresolved
	}
	return reportCheck(out, g.Output, res)
}

// startChecks are the daemon's checks at start that need no cloud,
// beyond config.Load: it reads the webhook secret, loads the TLS pair,
// and builds its etcd and broker settings. Without them "ok" would not
// mean "the daemon starts".
func startChecks(cfg *config.Config) []checkProblem {
	var out []checkProblem
	bad := func(field string, err error) { out = append(out, checkProblem{Field: field, Message: err.Error()}) }
	c := cfg.Controller
	if c.WebhookSecretFile != "" {
		if _, _, err := trigger.ReadSecret(c.WebhookSecretFile); err != nil {
			bad("controller.webhook_secret_file", err)
		}
	}
	if c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			bad("controller.tls_cert_file", fmt.Errorf("the TLS pair %s and %s: %w", c.TLSCertFile, c.TLSKeyFile, err))
		}
	}
	if e := c.Coordination.Etcd; e != nil {
		if _, err := coordination.OptionsFromConfig(e, "config-check", zap.NewNop()); err != nil {
			bad("controller.coordination.etcd", err)
		}
	}
	if a := c.Notifications.AMQP; a != nil {
		noop := func(context.Context, notifications.Notification) {}
		if _, err := notifications.NewListener(listenerConfig(a, a.Queue, a.QueueExpires.D()), noop, nil); err != nil {
			bad("controller.notifications.amqp", err)
		}
	}
	return out
}

// reportCheck prints res and returns the exit it calls for: 0 when the
// file is fit to run, 2 (nothing done) when it is not.
func reportCheck(out io.Writer, output string, res checkResult) error {
	res.OK = len(res.Problems) == 0 && len(res.Unresolved) == 0
	if output == "json" {
		if err := json.NewEncoder(out).Encode(res); err != nil {
			return err
		}
		if !res.OK {
			return &cli.ExitError{Code: cli.ExitUsage}
		}
		return nil
	}
	if !res.OK {
		lines := make([]string, 0, len(res.Problems)+len(res.Unresolved))
		for _, p := range res.Problems {
			lines = append(lines, res.Config+": "+config.Problem{Path: p.Field, Line: p.Line, Message: p.Message}.String())
		}
		for _, u := range res.Unresolved {
			lines = append(lines, res.Config+": "+u.String())
		}
		return cli.UsageError(errors.New(strings.Join(lines, "\n")))
	}
	fmt.Fprintf(out, "ok: %s: %d groups, %d servers", res.Config, len(res.Groups), res.Servers)
	if res.Cloud != "" {
		fmt.Fprintf(out, ", cloud %s", res.Cloud)
	}
	if res.CloudChecked {
		fmt.Fprintf(out, "; all %d names resolve in the cloud", res.NamesChecked)
	}
	fmt.Fprintln(out)
	for _, grp := range res.Groups {
		fmt.Fprintf(out, "  %-16s count %-4d image %s\n", grp.Name, grp.Count, grp.Image)
	}
	return nil
}

// String is an image selector as an operator writes it.
func (s imageSummary) String() string {
	var parts []string
	if s.ID != "" {
		parts = append(parts, "id "+s.ID)
	}
	if s.Name != "" {
		parts = append(parts, fmt.Sprintf("name %q", s.Name))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, s.Properties[k]))
	}
	for _, t := range s.Tags {
		parts = append(parts, fmt.Sprintf("tag %q", t))
	}
	if s.Newest {
		parts = append(parts, "newest")
	}
	return strings.Join(parts, ", ")
}
