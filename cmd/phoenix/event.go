package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/spf13/cobra"

	"github.com/phoenix-ops/phoenix/cmd/internal/cli"
	"github.com/phoenix-ops/phoenix/controller/trigger"
)

type eventSendFlags struct {
	url        string
	secretFile string
	file       string
	id         string
	typ        string
	groups     []string
	image      string
	server     []string
	urgent     bool
	reason     string
}

func newEventCommand(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "event",
		Short: "Send events to a running Phoenix daemon",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newEventSendCommand(g))
	return cmd
}

func newEventSendCommand(g *cli.Globals) *cobra.Command {
	f := &eventSendFlags{}
	cmd := &cobra.Command{
		Use:   "send --url URL --secret-file FILE (--file EVENT.json | --type TYPE [--group NAME ...] [--image IMAGE] [--server ID] --reason TEXT) [--id ID]",
		Short: "Sign an event and POST it to a Phoenix daemon",
		Long: `send builds an event from flags, or reads one from a JSON file (see
examples/events), checks it as the daemon would, signs it with the webhook
secret and POSTs it to the daemon's /v1/events.

Event types:
  image.published       re-resolve image selectors now (--image optional)
  security.patch        rebuild the --group groups, every group using
                        --image, or exactly the --server servers, now
                        (--reason required; --urgent: do not wait for a
                        hold, a maintenance window or a blocker)
  instance.compromised  take --server out of traffic and rebuild everything
                        sharing its image and revision (--reason required)

The event id defaults to a new UUID (also when --file has none); --id sets
it. Sending is retried on connection errors and 5xx answers: the id makes a
repeat harmless, and an answer of 409 (already accepted) counts as success.

Exit status: 0 accepted (or already accepted); 1 refused by the daemon or
no answer; 2 bad flags or an invalid event (nothing was sent).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEventSend(cmd.Context(), cmd.OutOrStdout(), g, f, cmd.Flags().Changed)
		},
	}
	cmd.Flags().StringVar(&f.url, "url", "", "the daemon's event URL, such as https://phoenix.internal:8443/v1/events (the path defaults to /v1/events)")
	cmd.Flags().StringVar(&f.secretFile, "secret-file", "", "file holding the webhook secret")
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "JSON file holding the event (excludes --type, --group, --image, --server, --reason)")
	cmd.Flags().StringVar(&f.id, "id", "", "event id (default: the file's, else a new UUID)")
	cmd.Flags().StringVar(&f.typ, "type", "", "event type: image.published, security.patch or instance.compromised")
	cmd.Flags().StringSliceVarP(&f.groups, "group", "g", nil, "group to rebuild (security.patch; repeatable)")
	cmd.Flags().StringVar(&f.image, "image", "", "image ID or name (security.patch: rebuild every group using it; image.published: informational)")
	cmd.Flags().StringSliceVar(&f.server, "server", nil, "server ID (instance.compromised: the one compromised; security.patch: replace exactly these, repeatable)")
	cmd.Flags().BoolVar(&f.urgent, "urgent", false, "security.patch: do not wait for holds, maintenance windows or blockers")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, such as a CVE id; recorded on every server replaced (security.patch, instance.compromised)")
	return cmd
}

// eventFlagOf names the flag that sets each event field, for messages.
var eventFlagOf = map[string]string{
	"id": "--id", "type": "--type", "groups": "--group", "image": "--image", "server": "--server", "servers": "--server", "urgent": "--urgent", "reason": "--reason",
}

func runEventSend(ctx context.Context, out io.Writer, g *cli.Globals, f *eventSendFlags, changed func(string) bool) error {
	if err := cli.CheckOutput(g.Output); err != nil {
		return err
	}
	log, err := g.Logger()
	if err != nil {
		return err
	}
	target, err := eventURL(f.url)
	if err != nil {
		return err
	}
	if f.secretFile == "" {
		return cli.UsageError(errors.New("--secret-file is required: the file holding the webhook secret the daemon was given"))
	}
	e, err := buildEvent(f, changed)
	if err != nil {
		return err
	}
	secret, warning, err := trigger.ReadSecret(f.secretFile)
	if err != nil {
		return cli.UsageError(fmt.Errorf("--secret-file: %w", err))
	}
	if warning != "" {
		log.Warn(warning)
	}

	status, body, err := trigger.Send(ctx, eventHTTPClient(), target, secret, e, time.Now())
	if err != nil {
		return &cli.ExitError{Code: cli.ExitNotDone, Err: err}
	}
	var result struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	switch {
	case status == http.StatusConflict:
		result.ID, result.Status = e.ID, "already accepted"
	case status >= 200 && status < 300:
		result.ID, result.Status = e.ID, "accepted"
	default:
		return &cli.ExitError{Code: cli.ExitNotDone, Err: fmt.Errorf("event %s refused: HTTP %d %s: %s", e.ID, status, http.StatusText(status), answerMessage(body))}
	}
	if g.Output == "json" {
		b, _ := json.Marshal(result)
		_, _ = fmt.Fprintf(out, "%s\n", b)
		return nil
	}
	if status == http.StatusConflict {
		_, _ = fmt.Fprintf(out, "event %s was already accepted\n", e.ID)
		return nil
	}
	_, _ = fmt.Fprintf(out, "accepted event %s\n", e.ID)
	return nil
}

// eventURL checks --url and gives it the path /v1/events when it has none.
func eventURL(raw string) (string, error) {
	if raw == "" {
		return "", cli.UsageError(errors.New("--url is required: the daemon's event URL, such as https://phoenix.internal:8443/v1/events"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", cli.UsageError(fmt.Errorf("--url: %w", err))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", cli.UsageError(fmt.Errorf("--url %s: expected an http:// or https:// URL", u.Redacted()))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/events"
	}
	return u.String(), nil
}

// buildEvent reads --file or the event flags, fills in the id and time,
// and checks the event with the daemon's own parser.
func buildEvent(f *eventSendFlags, changed func(string) bool) (trigger.Event, error) {
	var e trigger.Event
	if f.file != "" {
		for _, name := range []string{"type", "group", "image", "server", "urgent", "reason"} {
			if changed(name) {
				return e, cli.UsageError(fmt.Errorf("--file and --%s exclude each other: the file holds the whole event", name))
			}
		}
		raw, err := os.ReadFile(f.file)
		if err != nil {
			return e, cli.UsageError(fmt.Errorf("--file: %w", err))
		}
		// The daemon's own parser, on the file as written: an id that is
		// missing or replaced by --id is settled below, and the event as
		// sent is checked again then.
		if _, err := trigger.Parse(raw); err != nil {
			var pe *trigger.ParseError
			if !errors.As(err, &pe) || pe.Syntax || pe.Field != "id" {
				return e, cli.UsageError(fmt.Errorf("--file %s: %w", f.file, err))
			}
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return e, cli.UsageError(fmt.Errorf("--file %s: %w", f.file, err))
		}
	} else {
		if f.typ == "" {
			return e, cli.UsageError(errors.New("--type or --file is required"))
		}
		e = trigger.Event{Type: f.typ, Groups: f.groups, Image: f.image, Urgent: f.urgent, Reason: f.reason}
		switch {
		case f.typ == trigger.TypeInstanceCompromised && len(f.server) > 1:
			return e, cli.UsageError(errors.New("--server: an instance.compromised event is about one server"))
		case f.typ == trigger.TypeInstanceCompromised && len(f.server) == 1:
			e.Server = f.server[0]
		default:
			e.Servers = f.server
		}
	}
	if f.id != "" {
		e.ID = f.id
	}
	if e.ID == "" {
		e.ID = uuid.NewString()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC().Truncate(time.Second)
	}
	body, err := json.Marshal(e)
	if err == nil {
		_, err = trigger.Parse(body)
	}
	if err != nil {
		var pe *trigger.ParseError
		if errors.As(err, &pe) && f.file == "" && eventFlagOf[pe.Field] != "" {
			return e, cli.UsageError(fmt.Errorf("%s: %w", eventFlagOf[pe.Field], err))
		}
		if f.file != "" {
			return e, cli.UsageError(fmt.Errorf("--file %s: %w", f.file, err))
		}
		return e, cli.UsageError(err)
	}
	return e, nil
}

// eventHTTPClient retries a few times, briefly: the id makes a repeated
// POST harmless (a 409), and a person or a script is waiting.
func eventHTTPClient() *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = cleanhttp.DefaultPooledClient()
	c.HTTPClient.Timeout = 10 * time.Second
	c.RetryMax = 3
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.Logger = nil
	// Keep the last answer after the retries, to print its message.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// answerMessage is the daemon's {"error": ...} message, or the answer
// itself, shortened, when it is not that.
func answerMessage(body string) string {
	var answer struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &answer) == nil && answer.Error != "" {
		return answer.Error
	}
	body = strings.TrimSpace(body)
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	if body == "" {
		return "(no message)"
	}
	return body
}
