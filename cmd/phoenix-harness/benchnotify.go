package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/controller/notifications"
	"github.com/phoenix-ops/phoenix/provisioner"
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// readURL reads the broker's URL from a file (it holds a password).
func readURL(file string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the broker's URL: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// listen runs a notification listener on a queue of the bench's own
// until stop.
func listen(ctx context.Context, url, queue string, handle func(context.Context, notifications.Notification), log *zap.Logger) (stop func() notifications.Status, err error) {
	l, err := notifications.NewListener(notifications.Config{URL: url, Queue: queue, QueueExpires: time.Minute}, handle, log.Named("notifications"))
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = l.Run(lctx)
	}()
	// Bound before the first rollout, so none starts deaf.
	for deadline := time.Now().Add(30 * time.Second); !l.Status().Connected; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("the notification listener did not connect within 30s: %s", l.Status().LastError)
		}
	}
	return func() notifications.Status {
		cancel()
		wg.Wait()
		return l.Status()
	}, nil
}

// summarize prints the median of each mode's runs.
func summarize(out io.Writer, b cloudBench, runs []cloudRun) {
	for _, notified := range []bool{true, false} {
		var ratio, withDeletes, perBatch []float64
		var makespans []time.Duration
		for _, r := range runs {
			if r.notified == notified {
				ratio, withDeletes, perBatch = append(ratio, r.ratio), append(withDeletes, r.withDeletes), append(perBatch, r.perBatch)
				makespans = append(makespans, r.makespan)
			}
		}
		if len(ratio) == 0 {
			continue
		}
		mode := "polling only (every " + b.poll.String() + ")"
		if notified {
			mode = "with notifications (polling every " + b.poll.String() + " too)"
		}
		fmt.Fprintf(out, "real cloud %s, %s: median of %d runs: makespan %s; ratio %.3f to the pipelined bound, %.3f counting the deletes (goal ≤ 1.20); phoenix/batch %.3f counting the deletes (goal < 1)\n",
			b.cloud, mode, len(ratio), middle(makespans).Round(time.Millisecond), middle(ratio), middle(withDeletes), middle(perBatch))
	}
}

func middle[T float64 | time.Duration](xs []T) T {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// publishToCreate runs a daemon on a group of one, listening to the
// cloud's notifications with an interval of an hour, publishes b.publishes
// images one after the other, and times each from the end of its upload
// (the image active) to Phoenix's first create of a server on it.
func publishToCreate(ctx context.Context, out io.Writer, cloud *openstack.Cloud, b cloudBench, name string, log *zap.Logger) (err error) {
	group, imageName := name+"p", name+"-pub"
	yaml := fmt.Sprintf(`cloud: %s
controller: {interval: 1h}
groups:
  - name: %s
    count: 1
    image: {name: %s, newest: true}
    flavor: %s
    networks: [%s]
    rollout: {max_surge: 1, max_unavailable: 0}
    health:
      http: {port: %d, path: /healthz}
      interval: 2s
      rise_interval: 100ms
      timeout: 1s
      healthy_threshold: 1
      grace: 60s
`, b.cloud, group, imageName, b.flavor, b.network, b.healthPort)
	cfg, err := config.Parse("bench-publish.yaml", []byte(yaml), ".")
	if err != nil {
		return err
	}
	tag := controller.GroupTag(group)
	var published []string
	defer func() { err = cmp.Or(err, cleanUp(cloud, tag, published)) }()
	publish := func() (provisioner.Image, error) {
		// Glance orders images by a created_at of whole seconds.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
		img, err := cloud.PublishImage(ctx, imageName, strings.NewReader("phoenix bench "+group))
		if err == nil {
			published = append(published, img.ID)
		}
		return img, err
	}
	// on waits until the group is one ACTIVE server on image, and
	// returns when Phoenix sent its create.
	on := func(image string) (time.Time, error) {
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			list, err := cloud.ListServers(ctx, tag)
			if err != nil {
				continue
			}
			if len(list) == 1 && list[0].ImageID == image && list[0].Status == provisioner.StatusActive {
				sent, err := time.Parse(time.RFC3339Nano, list[0].Metadata[controller.MetaCreatedAt])
				return sent, err
			}
		}
		return time.Time{}, fmt.Errorf("group %s did not come to image %s within 5m", group, image)
	}

	if _, err := publish(); err != nil {
		return err
	}
	d := daemon.New(cloud.Services(), cfg, daemon.Options{Log: log, PollInterval: b.poll})
	stop, err := listen(ctx, b.amqpURL, "phoenix-bench-"+group, d.Notified, log)
	if err != nil {
		return err
	}
	defer stop()
	dctx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		_ = d.Run(dctx)
	}()
	defer func() { cancel(); <-ran }()
	if _, err := on(published[0]); err != nil {
		return err
	}
	var took []time.Duration
	for range b.publishes {
		img, err := publish()
		if err != nil {
			return err
		}
		active := time.Now()
		sent, err := on(img.ID)
		if err != nil {
			return err
		}
		took = append(took, sent.Sub(active))
	}
	sorted := slices.Sorted(slices.Values(took))
	p99 := sorted[min(len(sorted)-1, len(sorted)*99/100)]
	fmt.Fprintf(out, "real cloud %s: image published (upload done) → Phoenix's first create, a daemon listening with an interval of 1h, %d publishes: p50 %s, p99 %s, min %s (goal p99 < 1s)\n",
		b.cloud, len(took), sorted[len(sorted)/2].Round(time.Millisecond), p99.Round(time.Millisecond), sorted[0].Round(time.Millisecond))
	return nil
}
