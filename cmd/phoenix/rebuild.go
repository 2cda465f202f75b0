package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

type rebuildFlags struct {
	config  string
	groups  []string
	servers []string
	urgent  bool
	all     bool
	force   bool
	reason  string
	before  string
	timeout time.Duration
	poll    time.Duration
}

func newRebuildCommand(g *cli.Globals) *cobra.Command {
	f := &rebuildFlags{}
	cmd := &cobra.Command{
		Use:   "rebuild --config FILE (--group NAME ... | --all | --server ID ...) [--force --reason TEXT] [--urgent]",
		Short: "Replace drifted servers with fresh boots of the desired image, and wait until done",
		Long: `rebuild replaces every server of the chosen groups that has drifted from the
desired image or spec (with --force: every server), surge-first and gated on
health checks, and returns when the groups have converged.

With --server it replaces exactly the servers named (with the group's surge,
health gate, traffic and snapshot discipline), and nothing else. A held
group, a firing blocker or a closed maintenance window defers a
replacement; --urgent (with --force or --server) does not wait for them.

With -o json the progress lines go to stderr, and stdout gets one JSON
document once the run ends: the rollout id, each group's result and
replacements, and every event.

Exit status: 0 converged; 1 could not converge or deferred (the reason is printed; old
servers keep serving); 2 bad flags or configuration (nothing was done);
130 interrupted (SIGINT), 143 stopped by SIGTERM.
Stopping it at any moment is safe: running it again resumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRebuild(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), g, f)
		},
	}
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "Phoenix configuration file")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to rebuild (repeatable)")
	cmd.Flags().BoolVar(&f.all, "all", false, "rebuild every group in the configuration")
	cmd.Flags().StringSliceVar(&f.servers, "server", nil, "replace exactly this server, by ID (repeatable)")
	cmd.Flags().BoolVar(&f.urgent, "urgent", false, "with --force or --server: do not wait for a hold, a blocker or a maintenance window")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace every server created before now, drifted or not (needs --reason)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why a forced rebuild is needed (recorded on the servers it deletes)")
	cmd.Flags().StringVar(&f.before, "before", "", "with --force: replace servers created before this RFC 3339 time instead of now (to resume an interrupted forced rebuild)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up (exit 1, old servers keep serving) when not converged by then")
	cmd.Flags().DurationVar(&f.poll, "poll", 2*time.Second, "longest pause between looks at the cloud")
	return cmd
}

func runRebuild(ctx context.Context, out, errOut io.Writer, g *cli.Globals, f *rebuildFlags) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	switch {
	case len(f.servers) > 0 && (f.all || len(f.groups) > 0 || f.force):
		return cli.UsageError(errors.New("--server names the servers to replace: it goes without --group, --all and --force"))
	case f.urgent && !f.force && len(f.servers) == 0:
		return cli.UsageError(errors.New("--urgent goes with --force or --server"))
	case len(f.servers) > 0:
	case f.all && len(f.groups) > 0:
		return cli.UsageError(errors.New("use either --group or --all, not both"))
	case !f.all && len(f.groups) == 0:
		return cli.UsageError(errors.New("choose the groups: --group NAME (repeatable), --all, or the servers: --server ID"))
	case f.force && strings.TrimSpace(f.reason) == "":
		return cli.UsageError(errors.New("--force needs --reason TEXT: it is recorded on every server it replaces"))
	case !f.force && f.before != "":
		return cli.UsageError(errors.New("--before goes with --force"))
	case !f.force && len(f.servers) == 0 && f.reason != "":
		return cli.UsageError(errors.New("--reason goes with --force or --server"))
	}
	cutoff := time.Now()
	if f.before != "" {
		t, err := time.Parse(time.RFC3339, f.before)
		if err != nil {
			return cli.UsageError(fmt.Errorf("--before: expected an RFC 3339 time such as 2026-11-25T12:00:00Z, got %q", f.before))
		}
		cutoff = t
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	cfg, groups, err := loadConfig(f.config, f.groups, f.all || len(f.servers) > 0)
	if err != nil {
		return err
	}
	if err := refusePlaced(groups); err != nil {
		return err
	}
	warnOpenSecretFiles(log, cloudsSecretFiles(cfg.Cloud))
	cloud, err := connect(ctx, cfg.Cloud, log)
	if err != nil {
		return err
	}
	opts := controller.Options{RolloutID: uuid.NewString(), PollInterval: f.poll}
	if len(f.servers) > 0 {
		if groups, err = namedServers(ctx, cloud.Services(), groups, f.servers); err != nil {
			return err
		}
		reason := cmp.Or(strings.TrimSpace(f.reason), "named by phoenix rebuild --server")
		opts.Forces = []plan.Force{{Before: cutoff, Servers: f.servers, Reason: reason, Urgent: f.urgent}}
		opts.Only = f.servers
	}
	human := out
	if g.Output == "json" {
		human = errOut
	}
	if f.force {
		opts.RebuildBefore = cutoff
		opts.RebuildReason = f.reason
		opts.RebuildUrgent = f.urgent
		fmt.Fprintf(human, "forced rebuild of every server created before %s (%s); to resume it after an interruption, add --before %s\n",
			cutoff.UTC().Format(time.RFC3339), f.reason, cutoff.UTC().Format(time.RFC3339))
	}
	stop, err := wakeOnNotifications(ctx, cfg, &opts, log)
	if err != nil {
		return err
	}
	defer stop()
	results, doc := rebuild(ctx, out, errOut, g.Output, cloud.Services(), groups, log, opts, f.timeout)
	if g.Output == "json" {
		if f.force {
			doc.Forced = &forcedDoc{Before: cutoff.UTC(), Reason: f.reason}
		}
		if err := printJSON(out, doc); err != nil {
			return err
		}
	}
	return exitFor(results, opts.RolloutID, f.timeout)
}

// namedServers returns the groups the servers named are in, refusing a
// server that is in none or that is protected.
func namedServers(ctx context.Context, cloud provisioner.Cloud, all []config.Group, ids []string) ([]config.Group, error) {
	var out []config.Group
	for _, id := range ids {
		s, g, err := controller.FindServer(ctx, cloud, all, id)
		if err != nil {
			return nil, &cli.ExitError{Code: cli.ExitNotDone, Err: err}
		}
		if strings.EqualFold(s.Metadata[controller.MetaProtected], "true") {
			return nil, &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("server %s (%s) of group %s is protected (%s): run phoenix unprotect --server %s first",
				s.Name, s.ID, g.Name, cmp.Or(s.Metadata[controller.MetaProtectReason], "no reason given"), s.ID)}
		}
		if !slices.ContainsFunc(out, func(o config.Group) bool { return o.Name == g.Name }) {
			out = append(out, g)
		}
	}
	return out, nil
}

// rebuild runs the rollout with live progress for people (on out, or on
// errOut under -o json), prints the outcome, and returns it with the
// document -o json prints; the demo shares it.
func rebuild(ctx context.Context, out, errOut io.Writer, output string, cloud provisioner.Cloud, groups []config.Group,
	log *zap.Logger, opts controller.Options, timeout time.Duration) ([]controller.GroupResult, rebuildDoc) {
	p := newProgress(out, errOut, output, groups)
	names := make([]string, len(groups))
	for i, gr := range groups {
		names[i] = gr.Name
	}
	p.start(opts.RolloutID, names)
	log.Info("rebuild started", zap.String("rollout", opts.RolloutID), zap.Strings("groups", names))

	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	results := controller.Rebuild(ctx, cloud, groups, p, log, opts)
	p.finish(results)
	return results, p.document()
}

func exitFor(results []controller.GroupResult, rollout string, timeout time.Duration) error {
	var failed []string
	for _, r := range results {
		if !r.Converged {
			failed = append(failed, failureParagraph(r, timeout))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("rollout %s did not converge.\n%s", rollout, strings.Join(failed, "\n"))}
}

// failureParagraph says, in one paragraph, where a group stands, why it
// stopped and what to do.
func failureParagraph(r controller.GroupResult, timeout time.Duration) string {
	s := r.Status
	var b strings.Builder
	fmt.Fprintf(&b, "Group %s: %d of %d servers are current and serving", r.Group, s.Available, s.Desired)
	if s.Old > 0 {
		fmt.Fprintf(&b, "; %d old servers remain and keep serving", s.Old)
	}
	if s.Booting > 0 {
		fmt.Fprintf(&b, "; %d new servers are still booting", s.Booting)
	}
	fmt.Fprintf(&b, ". Phoenix created %d and deleted %d servers in this run. ", r.Created, r.Deleted)
	err := r.Err
	switch {
	case errors.Is(err, controller.ErrRolledBack):
		fmt.Fprintf(&b, "ROLLED BACK: %v. The rejected image is skipped until a newer one is published; `phoenix resume --group %s` tries it again.", err, r.Group)
	case errors.Is(err, controller.ErrDeferred):
		fmt.Fprintf(&b, "It is DEFERRED: %v. Release the hold, wait for the window or the blocker, or run again with --urgent.", err)
	case errors.Is(err, controller.ErrPaused):
		fmt.Fprintf(&b, "It is PAUSED: %v.", err)
	case errors.Is(err, controller.ErrHalted):
		fmt.Fprintf(&b, "The rollout HALTED, and stays halted across runs: %v. No old server was touched, and the new servers that failed were removed.", err)
	case errors.Is(err, controller.ErrStuck):
		fmt.Fprintf(&b, "It cannot proceed: %v. Fix the configuration or the cloud, then run the same command again.", err)
	case r.CreateError != nil && provisioner.IsQuota(r.CreateError):
		fmt.Fprintf(&b, "The cloud refused new servers: %v. Free or raise the quota (or lower rollout.max_surge), then run the same command again; it resumes where it stopped.", r.CreateError)
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(&b, "It did not converge within --timeout %s", timeout)
		if last := cmpOr(r.CreateError, r.LastError); last != nil {
			fmt.Fprintf(&b, " (last error: %v)", last)
		}
		b.WriteString(". Run the same command again to resume, or look at the new servers' health.")
	default:
		fmt.Fprintf(&b, "It stopped: %v. Run the same command again to resume.", err)
	}
	return b.String()
}

func cmpOr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
