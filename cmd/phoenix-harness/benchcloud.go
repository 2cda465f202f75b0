package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// cloudBench says what the makespan run on a real cloud builds.
type cloudBench struct {
	cloud      string
	servers    int
	surge      int
	flavor     string
	network    string
	healthPort int
	poll       time.Duration
	// runs is how many timed rollouts are made in each mode; amqpURL,
	// when set, is the cloud's RabbitMQ: the rollouts then alternate
	// between listening to its notifications and polling only, and
	// publishes images are published to a daemon to time the first
	// create after each.
	runs      int
	amqpURL   string
	publishes int
}

// cloudRun is one timed rollout on the real cloud.
type cloudRun struct {
	notified           bool
	makespan           time.Duration
	ratio, withDeletes float64 // to the pipelined bound, without and with the deletes
	perBatch           float64 // to the batch strategy, deletes counted
}

// benchRealCloud rebuilds a group on a real cloud and judges the time
// against the pipelined bound of the create→ACTIVE times that cloud
// showed. It publishes its own gold images (tiny, named for the run) and
// deletes them and its servers at the end, whatever happened.
func benchRealCloud(ctx context.Context, out io.Writer, cloud *openstack.Cloud, b cloudBench, log *zap.Logger) (err error) {
	name := "bench-" + uuid.NewString()[:8]
	imageName := name + "-gold"
	// A health check as an operator would write one; the rise interval is
	// short because a rollout's speed is how soon it learns a new server
	// serves.
	yaml := fmt.Sprintf(`cloud: %s
groups:
  - name: %s
    count: %d
    image: {name: %s, newest: true}
    flavor: %s
    networks: [%s]
    rollout: {max_surge: %d, max_unavailable: 0}
    health:
      http: {port: %d, path: /healthz}
      interval: 2s
      rise_interval: 100ms
      timeout: 1s
      healthy_threshold: 1
      grace: 60s
`, b.cloud, name, b.servers, imageName, b.flavor, b.network, b.surge, b.healthPort)
	cfg, err := config.Parse("bench-cloud.yaml", []byte(yaml), ".")
	if err != nil {
		return err
	}
	groups := cfg.Groups
	tag := controller.GroupTag(name)

	var published []string
	defer func() { err = cmp.Or(err, cleanUp(cloud, tag, published)) }()
	publish := func() (provisioner.Image, error) {
		img, err := cloud.PublishImage(ctx, imageName, strings.NewReader("phoenix bench "+name))
		if err == nil {
			published = append(published, img.ID)
		}
		return img, err
	}
	var wakes *controller.Wakes
	var observer *cloudObserver
	if b.amqpURL != "" {
		// One listener: its wakes reach Phoenix only in the notified
		// runs; the observer times every run from the same messages.
		wakes, observer = controller.NewWakes(), newCloudObserver()
		heard := func(ctx context.Context, n notifications.Notification) {
			observer.Notified(ctx, n)
			wakes.Notified(ctx, n)
		}
		stop, err := listen(ctx, b.amqpURL, "phoenix-bench-"+name, heard, log)
		if err != nil {
			return err
		}
		defer func() {
			s := stop()
			fmt.Fprintf(out, "real cloud %s: notifications heard during the rollouts: %v (ignored %d, malformed %d)\n", b.cloud, s.Handled, s.Ignored, s.Malformed)
		}()
	}
	notified := false
	rebuild := func() error {
		opts := controller.Options{PollInterval: b.poll, Parallelism: 16}
		if notified {
			opts.Wakes = wakes
		}
		rctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		defer cancel()
		for _, r := range controller.Rebuild(rctx, cloud.Services(), groups, nil, log, opts) {
			if !r.Converged {
				return fmt.Errorf("group %s did not converge: %w", r.Group, r.Err)
			}
		}
		return nil
	}

	if _, err := publish(); err != nil {
		return err
	}
	if err := rebuild(); err != nil {
		return fmt.Errorf("initial fleet: %w", err)
	}
	var runs []cloudRun
	for i := range max(1, b.runs) * map[bool]int{false: 1, true: 2}[b.amqpURL != ""] {
		notified = b.amqpURL != "" && i%2 == 0
		r, err := timedRollout(ctx, out, cloud, b, tag, notified, observer, publish, rebuild)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	summarize(out, b, runs)
	if b.amqpURL != "" && b.publishes > 0 {
		return publishToCreate(ctx, out, cloud, b, name, log)
	}
	return nil
}

// timedRollout publishes a new image, rebuilds the group onto it, and
// prints the makespan against the pipelined bound of the create→ACTIVE
// times the cloud showed, without and with the deletes the surge waits
// on.
func timedRollout(ctx context.Context, out io.Writer, cloud *openstack.Cloud, b cloudBench, tag string, notified bool,
	observer *cloudObserver, publish func() (provisioner.Image, error), rebuild func() error) (cloudRun, error) {
	run := cloudRun{notified: notified}
	mode := ""
	if b.amqpURL != "" {
		mode = map[bool]string{true: " with notifications", false: " polling only"}[notified]
	}
	// Glance orders images by a created_at of whole seconds.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	patched, err := publish()
	if err != nil {
		return run, err
	}
	// How long the cloud takes to delete a server: a surge slot frees
	// only once the old server is gone. The observer hears it from Nova;
	// without one, a watcher lists the group while the rollout runs.
	gone := map[string]time.Duration{} // server → from Phoenix's delete to gone
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		deleting := map[string]time.Time{}
		for observer == nil && wctx.Err() == nil {
			list, err := cloud.ListServers(wctx, tag)
			now := time.Now()
			if err == nil {
				present := map[string]bool{}
				for _, s := range list {
					present[s.ID] = true
					if s.Metadata[controller.MetaPhase] == plan.PhaseDeleting {
						if at, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaPhaseAt]); err == nil {
							deleting[s.ID] = at
						}
					}
				}
				for id, at := range deleting {
					if _, seen := gone[id]; !seen && !present[id] {
						gone[id] = now.Sub(at)
					}
				}
			}
			select {
			case <-wctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	started := time.Now()
	err = rebuild()
	makespan := time.Since(started)
	// The last deletes finish after the group converged.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if list, err := cloud.ListServers(ctx, tag); err == nil && len(list) <= b.servers {
			break
		}
	}
	stopWatch()
	<-watched
	if err != nil {
		return run, err
	}
	if observer != nil {
		// delete.end follows the server leaving the list by moments.
		for deadline := time.Now().Add(time.Minute); observer.pending(started) > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		}
		gone = observer.deletes(started)
	}

	list, err := cloud.ListServers(ctx, tag)
	if err != nil {
		return run, err
	}
	type job struct {
		created time.Time
		took    time.Duration
	}
	var jobs []job
	for _, s := range list {
		if s.ImageID != patched.ID {
			continue
		}
		// Phoenix's own clock when it sent the create, and Nova's when the
		// server went ACTIVE: both clocks of the same cloud's host when the
		// development cloud runs here.
		sent, perr := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaCreatedAt])
		active := s.LaunchedAt // whole seconds: Nova's database keeps no fraction
		if observer != nil {
			var heard bool
			if active, heard = observer.activeAt(s.ID); !heard {
				return run, fmt.Errorf("server %s: Nova announced no ACTIVE", s.ID)
			}
		}
		if perr != nil || active.IsZero() {
			return run, fmt.Errorf("server %s: no create time (%q) or launch time", s.ID, s.Metadata[controller.MetaCreatedAt])
		}
		jobs = append(jobs, job{sent, active.Sub(sent)})
	}
	if len(jobs) != b.servers {
		return run, fmt.Errorf("%d servers run the new image, want %d", len(jobs), b.servers)
	}
	slices.SortFunc(jobs, func(a, b job) int { return a.created.Compare(b.created) })
	durations := make([]time.Duration, len(jobs))
	for i, j := range jobs {
		durations[i] = j.took
	}
	bound := pipelinedBound(durations, b.surge)
	seen, seenGone := "ACTIVE at Nova's launched_at, in whole seconds", "seen by listing every 100ms"
	if observer != nil {
		seen, seenGone = "ACTIVE as Nova announced it", "as Nova announced it"
	}
	batch := batchMakespan(durations, b.surge)
	sorted := slices.Sorted(slices.Values(durations))
	run.makespan, run.ratio = makespan, makespan.Seconds()/bound.Seconds()
	fmt.Fprintf(out, "real cloud %s%s: %d servers (surge %d): %s; pipelined bound %s from the create→ACTIVE times the cloud showed (%s; p50 %s, max %s; the health check passed at ACTIVE); ratio %.3f; batch strategy %s; phoenix/batch %.3f\n",
		b.cloud, mode, b.servers, b.surge, makespan.Round(time.Millisecond), bound.Round(time.Millisecond), seen,
		sorted[len(sorted)/2].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond),
		makespan.Seconds()/bound.Seconds(), batch.Round(time.Millisecond), makespan.Seconds()/batch.Seconds())
	if len(gone) > 0 {
		// Each slot is busy until the old server it replaces is gone: a
		// rollout that keeps max_surge cannot start the next server
		// sooner. The deletes the group waited on are all but the last
		// surge ones, which end after the last new server serves.
		deletes := slices.Sorted(maps.Values(gone))
		withDeletes := make([]time.Duration, len(durations))
		for i, d := range durations {
			withDeletes[i] = d
			if i < len(durations)-b.surge {
				withDeletes[i] += deletes[len(deletes)/2]
			}
		}
		bd := pipelinedBound(withDeletes, b.surge)
		bbd := batchMakespan(withDeletes, b.surge)
		run.withDeletes, run.perBatch = makespan.Seconds()/bd.Seconds(), makespan.Seconds()/bbd.Seconds()
		fmt.Fprintf(out, "real cloud %s%s: deletes took p50 %s, max %s (from Phoenix's decision to gone, %s); counting the median delete in each slot the surge waits on: bound %s, ratio %.3f; batch strategy %s, phoenix/batch %.3f\n",
			b.cloud, mode, deletes[len(deletes)/2].Round(time.Millisecond), deletes[len(deletes)-1].Round(time.Millisecond), seenGone,
			bd.Round(time.Millisecond), makespan.Seconds()/bd.Seconds(), bbd.Round(time.Millisecond), makespan.Seconds()/bbd.Seconds())
	}
	return run, nil
}

// cleanUp deletes a bench's servers (by their group tag) and the images
// it published, with a context of its own: the run's may be over.
func cleanUp(cloud *openstack.Cloud, tag string, images []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := cloud.ListServers(ctx, tag)
	for _, s := range list {
		err = cmp.Or(err, cloud.DeleteServer(ctx, s.ID))
	}
	for _, id := range images {
		err = cmp.Or(err, cloud.DeleteImage(ctx, id))
	}
	return err
}
