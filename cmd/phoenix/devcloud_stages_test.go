package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/phoenix-ops/phoenix/controller"
	"github.com/phoenix-ops/phoenix/controller/daemon"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// TestDevcloudStages runs one real phoenix daemon over two stages on the
// real cloud: staging takes the newest gold image of the run's name and
// promotes it with a tag of the run's own once its servers have served
// healthy for promote.after; prod requires that tag. Glance itself is the
// record between them: the test reads the tag off the image with the
// image API, and Nova's servers say which image each stage runs.
//
// Each wait is generous (CI runs every TestDevcloud* side by side on one
// loaded 2-core machine); no timing is asserted tightly, only the order
// of things: the tag never before staging converged and its last server
// had been ready for promote.after, prod never on an image before the tag.
func TestDevcloudStages(t *testing.T) {
	if os.Getenv("PHOENIX_DEVCLOUD_CLOUDS") == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	t.Parallel()
	run := startDevcloudRun(t, "e2e-stages")
	ctx, cloud, glance := run.ctx, run.cloud, run.glance
	staging, prod := run.group, run.group+"-prod"
	stageTag := "staged-" + staging[len(staging)-8:] // the run's own: Glance is shared
	stagingTag, prodTag := run.tag, controller.GroupTag(prod)
	wwDeleteServersAtEnd(t, cloud, prodTag) // the run deletes staging's
	published := wwDeleteImagesAtEnd(t, glance)

	imageA, _ := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageA)

	const (
		interval = 5 * time.Second  // the image watch's period, and a group at rest's
		after    = 30 * time.Second // promote.after
		patience = 6 * time.Minute  // per wait: a loaded 2-core cloud
		// slack is how much earlier than its due time the tag may be seen:
		// the looks at Glance, Nova and the daemon take their time.
		slack = 2 * time.Second
	)
	cfg := wwWriteConfig(t, filepath.Join(t.TempDir(), "phoenix.yaml"), interval,
		// Staging promotes after max(promote.after, rollout.watch): no
		// watch (10m by default), so that after is the wait.
		stGroupYAML(staging, fmt.Sprintf("{name: %s, newest: true}", run.image), ", watch: 0s",
			fmt.Sprintf("    promote: {tag: %s, after: %s}\n", stageTag, after)),
		stGroupYAML(prod, fmt.Sprintf("{name: %s, tags: [%s], newest: true}", run.image, stageTag), "", ""))

	m := startDevcloudMonitor(t, ctx, run.cloudsFile, "devcloud",
		watchedGroup{Name: staging, Count: 2, Surge: 1}, watchedGroup{Name: prod, Count: 2, Surge: 1})
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info", "--log-format", "json")
	daemonStarted := time.Now()
	defer func() { // runs before the cleanups stop the daemon
		if t.Failed() {
			t.Logf("the daemon's status at the failure:\n%s", stRawStatus(d))
		}
	}()

	// 1. Staging builds on image A; prod, whose selector matches no image
	// yet, builds nothing. A gets the tag only once staging is at rest.
	var notBeforeA time.Time // the start of the last look at A without the tag
	wwWait(t, patience, "staging built on image A", func() bool {
		began := time.Now()
		tagged, ok := stTagged(t, ctx, glance, imageA, stageTag)
		if ok && tagged {
			t.Fatalf("image A carries tag %s before staging was at rest on it", stageTag)
		}
		if ok {
			notBeforeA = began
		}
		if list := groupServers(t, ctx, cloud, prodTag); len(list) != 0 {
			t.Fatalf("prod holds %d servers before any image carries tag %s: %s runs %s", len(list), stageTag, list[0].Name, list[0].ImageID)
		}
		return stAtRest(d.status(t), staging, imageA) && onNova(t, ctx, cloud, stagingTag, 2, imageA)
	})
	restA := time.Now()
	assertGroup(t, groupServers(t, ctx, cloud, stagingTag), 2, imageA, staging)
	lastReadyA, ok := stLastReady(groupServers(t, ctx, cloud, stagingTag), imageA)
	if !ok {
		t.Fatalf("staging's servers on image A carry no %s record once at rest", controller.MetaReadyAt)
	}
	tagA := stWaitTag(t, ctx, glance, patience, imageA, stageTag, &notBeforeA, func() string {
		if list := groupServers(t, ctx, cloud, prodTag); len(list) != 0 {
			return fmt.Sprintf("prod holds %d servers: %s", len(list), stDescribe(list))
		}
		return ""
	})
	if tagA.Before(lastReadyA.Add(after - slack)) {
		t.Errorf("image A's tag seen at %s, %.1fs after staging's last server was ready (%s): before promote.after %v",
			stClock(tagA), tagA.Sub(lastReadyA).Seconds(), stClock(lastReadyA), after)
	}
	t.Logf("image A: staging at rest on it %.1fs after the daemon started; tag seen %.1fs after staging's last server was ready, %.1fs after the test saw staging at rest",
		restA.Sub(daemonStarted).Seconds(), tagA.Sub(lastReadyA).Seconds(), tagA.Sub(restA).Seconds())

	wwWait(t, patience, "prod built on image A", func() bool {
		return wwAtRest(d.status(t), 2, imageA) &&
			onNova(t, ctx, cloud, stagingTag, 2, imageA) && onNova(t, ctx, cloud, prodTag, 2, imageA)
	})
	prodA := groupServers(t, ctx, cloud, prodTag)
	assertGroup(t, prodA, 2, imageA, prod)
	if first, ok := firstCreatedOn(prodA, imageA); !ok || first.Before(notBeforeA) {
		t.Errorf("prod's first server on image A created at %s, before Glance took the tag (not before %s)", stClock(first), stClock(notBeforeA))
	} else {
		t.Logf("image A: prod's first server created %+.1fs from the test seeing the tag (Glance took it in the %.1fs before); prod at rest %.1fs after the tag was seen",
			first.Sub(tagA).Seconds(), tagA.Sub(notBeforeA).Seconds(), time.Since(tagA).Seconds())
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2. Image B: staging takes it, prod stays on A, exactly, until
	// Glance shows B's tag.
	// Glance's created_at has second precision, and the selectors take
	// the newest.
	waitNextSecond()
	imageB, publishedAt := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageB)
	prodIDs := stIDs(prodA)
	waitingFor := fmt.Sprintf("image %s (%s) is waiting for tag %s: group %s", run.image, imageB, stageTag, staging)
	var (
		restB, tagB, notBeforeB time.Time
		stageLines              []string // prod's Stage, each kind once
		promotion               stPromotion
	)
	wwWait(t, patience, "image B tagged after staging converged on it", func() bool {
		began := time.Now()
		tagged, ok := stTagged(t, ctx, glance, imageB, stageTag)
		if ok && !tagged {
			notBeforeB = began
		}
		st := d.status(t)
		if g, ok := stGroup(st, prod); ok && strings.Contains(g.Stage, waitingFor) && !slices.ContainsFunc(stageLines, stSameKind(g.Stage)) {
			stageLines = append(stageLines, g.Stage)
		}
		if g, ok := stGroup(st, staging); ok && g.Status.Promotion != nil && g.Status.Promotion.ImageID == imageB && !g.Status.Promotion.Due.IsZero() {
			promotion = stPromotion{Since: g.Status.Promotion.Since, Due: g.Status.Promotion.Due}
		}
		if restB.IsZero() && !tagged && stAtRest(st, staging, imageB) && onNova(t, ctx, cloud, stagingTag, 2, imageB) {
			restB = time.Now()
		}
		// Prod: the servers it had on A, none other, until the tag.
		list := groupServers(t, ctx, cloud, prodTag)
		if !tagged && (!slices.Equal(stIDs(list), prodIDs) || slices.ContainsFunc(list, func(s provisioner.Server) bool { return s.ImageID != imageA })) {
			// Glance may have taken the tag since the look above.
			if again, ok := stTagged(t, ctx, glance, imageB, stageTag); !ok || !again {
				t.Fatalf("prod left its servers on image A before image B carries tag %s: %s", stageTag, stDescribe(list))
			}
			tagged = true
		}
		if tagged && tagB.IsZero() {
			tagB = time.Now()
			if restB.IsZero() {
				t.Fatalf("image B carries tag %s before the test saw staging at rest on it", stageTag)
			}
		}
		return tagged
	})
	stagingB := groupServers(t, ctx, cloud, stagingTag)
	assertGroup(t, stagingB, 2, imageB, staging)
	lastReadyB, ok := stLastReady(stagingB, imageB)
	if !ok {
		t.Fatalf("staging's servers on image B carry no %s record once at rest", controller.MetaReadyAt)
	}
	if tagB.Before(lastReadyB.Add(after - slack)) {
		t.Errorf("image B's tag seen at %s, %.1fs after staging's last server was ready (%s): before promote.after %v",
			stClock(tagB), tagB.Sub(lastReadyB).Seconds(), stClock(lastReadyB), after)
	}
	if !promotion.Since.IsZero() && !promotion.Since.Equal(lastReadyB) {
		t.Errorf("staging's status counted the wait from %s, its last server on B was ready at %s", stClock(promotion.Since), stClock(lastReadyB))
	}
	t.Logf("image B: staging at rest on it %.1fs after the publication; its last server ready at %s, the tag due at %s (daemon status), seen at %s: %.1fs after the last ready, %.1fs after the test saw staging at rest",
		restB.Sub(publishedAt).Seconds(), stClock(lastReadyB), stClock(promotion.Due), stClock(tagB),
		tagB.Sub(lastReadyB).Seconds(), tagB.Sub(restB).Seconds())
	if len(stageLines) == 0 {
		t.Errorf("prod's status never said that image B waits for tag %s (want %q…)", stageTag, waitingFor)
	}
	for _, l := range stageLines {
		t.Logf("prod's stage while it waited: %s", l)
	}

	// 3. Prod takes B, after the tag.
	wwWait(t, patience, "prod converged on image B", func() bool {
		return wwAtRest(d.status(t), 2, imageB) &&
			onNova(t, ctx, cloud, stagingTag, 2, imageB) && onNova(t, ctx, cloud, prodTag, 2, imageB)
	})
	prodConverged := time.Now()
	prodB := groupServers(t, ctx, cloud, prodTag)
	assertGroup(t, prodB, 2, imageB, prod)
	for _, s := range prodB {
		if slices.Contains(prodIDs, s.ID) {
			t.Errorf("prod's server %s of image A survived image B", s.Name)
		}
	}
	first, ok := firstCreatedOn(prodB, imageB)
	if !ok || first.Before(notBeforeB) {
		t.Errorf("prod's first server on image B created at %s, before Glance took the tag (not before %s)", stClock(first), stClock(notBeforeB))
	}
	if g, ok := stGroup(d.status(t), prod); !ok || g.Stage != "" {
		t.Errorf("prod's status still names a stage it waits for once on image B: %q", g.Stage)
	}
	t.Logf("image B: prod's first server created %+.1fs from the test seeing the tag (Glance took it in the %.1fs before), prod at rest %.1fs after the tag was seen; %.1fs from the publication to both stages on B",
		first.Sub(tagB).Seconds(), tagB.Sub(notBeforeB).Seconds(), prodConverged.Sub(tagB).Seconds(), prodConverged.Sub(publishedAt).Seconds())

	// Glance: both images active, each with the stage's tag alone, which
	// staging added once.
	for _, id := range []string{imageA, imageB} {
		img, err := images.Get(ctx, glance, id).Extract()
		if err != nil || img.Status != images.ImageStatusActive || !slices.Equal(img.Tags, []string{stageTag}) {
			t.Errorf("image %s in Glance: %+v, %v; want it active with the tags [%s]", id, img, err, stageTag)
		}
	}
	for _, id := range []string{imageA, imageB} {
		lines := d.logLines(`"image promoted"`)
		n := 0
		for _, l := range lines {
			if strings.Contains(l, id) {
				n++
			}
		}
		t.Logf("the daemon logged the promotion of image %s %d time(s)", id, n)
		if n == 0 {
			t.Errorf("the daemon never logged the promotion of image %s", id)
		}
	}
	d.stop(t, syscall.SIGTERM)
	m.Check(t)
}

// stPromotion is what the test keeps of staging's promotion status.
type stPromotion struct{ Since, Due time.Time }

// stGroupYAML is a group of two on the selector, its health checked at
// the devcloud responder; rollout holds more rollout settings, each after
// a comma, extra more fields, indented as in the file.
func stGroupYAML(name, selector, rollout, extra string) string {
	return fmt.Sprintf(`  - name: %s
    count: 2
    image: %s
    flavor: m1.small
    networks: [phoenix-net]
    rollout: {max_surge: 1, min_ready: 1s%s}
    health:
      http: {port: %d, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
%s`, name, selector, rollout, responderPort, extra)
}

// stGroup is the named group's status.
func stGroup(st daemon.Status, name string) (daemon.GroupStatus, bool) {
	for _, g := range st.Groups {
		if g.Group == name {
			return g, true
		}
	}
	return daemon.GroupStatus{}, false
}

// stAtRest says whether the daemon shows the named group converged on
// image, whatever the other groups do.
func stAtRest(st daemon.Status, name, image string) bool {
	g, ok := stGroup(st, name)
	return ok && !g.InProgress && g.Halted == "" && g.DesiredImage.ID == image && g.Status.Converged
}

// stTagged says whether Glance shows the tag on the image; ok is false
// when the look failed (logged: the loaded cloud may answer late).
func stTagged(t *testing.T, ctx context.Context, glance *gophercloud.ServiceClient, image, tag string) (tagged, ok bool) {
	t.Helper()
	img, err := images.Get(ctx, glance, image).Extract()
	if err != nil {
		t.Logf("looking at image %s in Glance: %v", image, err)
		return false, false
	}
	return slices.Contains(img.Tags, tag), true
}

// stWaitTag polls Glance until the image carries the tag. It returns
// when the look that saw it ended, and keeps in notBefore when the last
// look that did not began: Glance took the tag between the two. Until
// the tag, wrong says what is wrong ("" when nothing): something wrong
// fails the test unless Glance, asked again, shows the tag by then.
func stWaitTag(t *testing.T, ctx context.Context, glance *gophercloud.ServiceClient, patience time.Duration, image, tag string, notBefore *time.Time, wrong func() string) time.Time {
	t.Helper()
	wwWait(t, patience, "Glance to show tag "+tag+" on image "+image, func() bool {
		began := time.Now()
		tagged, ok := stTagged(t, ctx, glance, image, tag)
		if ok && !tagged {
			*notBefore = began
		}
		if !tagged {
			if what := wrong(); what != "" {
				if again, ok := stTagged(t, ctx, glance, image, tag); !ok || !again {
					t.Fatalf("before image %s carries tag %s: %s", image, tag, what)
				}
				tagged = true
			}
		}
		return tagged
	})
	return time.Now()
}

// stLastReady is when the last server on image became ready, by
// Phoenix's record on it.
func stLastReady(list []provisioner.Server, image string) (time.Time, bool) {
	var last time.Time
	for _, s := range list {
		if s.ImageID != image {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, s.Metadata[controller.MetaReadyAt])
		if err == nil && at.After(last) {
			last = at
		}
	}
	return last, !last.IsZero()
}

// stIDs are the servers' IDs, sorted.
func stIDs(list []provisioner.Server) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

// stDescribe names each server with its image and status.
func stDescribe(list []provisioner.Server) string {
	var out []string
	for _, s := range list {
		out = append(out, fmt.Sprintf("%s (%s) on %s, %s", s.Name, s.ID, s.ImageID, s.Status))
	}
	return strings.Join(out, "; ")
}

// stSameKind matches a stage line of the same kind as line: the same
// words once the figures are gone ("healthy for 12s of 30s").
func stSameKind(line string) func(string) bool {
	strip := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return -1
			}
			return r
		}, s)
	}
	want := strip(line)
	return func(l string) bool { return strip(l) == want }
}

// stRawStatus is the daemon's /v1/status as it answers, or why not.
func stRawStatus(d *loggedDaemon) string {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(d.url + "/v1/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// stClock writes a time of day to the millisecond.
func stClock(at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Format("15:04:05.000")
}
