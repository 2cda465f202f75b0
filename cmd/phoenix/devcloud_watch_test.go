package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/phoenix-ops/phoenix/provisioner/openstack"
)

// TestDevcloudImageWatch runs one real phoenix daemon over two groups
// whose image selectors are the same, with nothing but the image watch
// (controller.interval, polling Glance) to learn of a new gold image: no
// event, no notification listener, no rebuild command. A new image
// published in Glance under the shared name has every server of both
// groups replaced onto it, as Nova shows.
func TestDevcloudImageWatch(t *testing.T) {
	if os.Getenv("PHOENIX_DEVCLOUD_CLOUDS") == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	t.Parallel()
	run := startDevcloudRun(t, "e2e-watch")
	ctx, cloud, glance := run.ctx, run.cloud, run.glance
	groups := []string{run.group, run.group + "-b"}
	tags := []string{run.tag, controller.GroupTag(groups[1])}
	wwDeleteServersAtEnd(t, cloud, tags[1]) // the run deletes its own group's
	published := wwDeleteImagesAtEnd(t, glance)

	imageA, _ := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageA)

	// The interval is the image watch's period (and a group at rest's):
	// short, so that the test waits for it, not the other way round.
	const interval = 5 * time.Second
	var specs []string
	for _, g := range groups {
		specs = append(specs, wwGroupYAML(g, run.image, ""))
	}
	cfg := wwWriteConfig(t, filepath.Join(t.TempDir(), "phoenix.yaml"), interval, specs...)

	m := startDevcloudMonitor(t, ctx, run.cloudsFile, "devcloud",
		watchedGroup{Name: groups[0], Count: 2, Surge: 1}, watchedGroup{Name: groups[1], Count: 2, Surge: 1})
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info", "--log-format", "json")
	daemonStarted := time.Now()

	// 1. Both groups built on image A.
	wwWait(t, 4*time.Minute, "both groups built on image A", func() bool {
		return wwAtRest(d.status(t), len(groups), imageA) &&
			onNova(t, ctx, cloud, tags[0], 2, imageA) && onNova(t, ctx, cloud, tags[1], 2, imageA)
	})
	first := map[string]bool{}
	for i, tag := range tags {
		list := groupServers(t, ctx, cloud, tag)
		assertGroup(t, list, 2, imageA, groups[i])
		for _, s := range list {
			first[s.ID] = true
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2. A new gold image under the shared name, and nothing else.
	// Glance's created_at has second precision, and the selectors take
	// the newest.
	waitNextSecond()
	imageB, publishedAt := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageB)
	started := make([]time.Duration, len(groups))
	wwWait(t, 4*time.Minute, "every server of both groups replaced onto image B", func() bool {
		for i, tag := range tags {
			if started[i] == 0 {
				if at, ok := firstCreatedOn(groupServers(t, ctx, cloud, tag), imageB); ok {
					started[i] = at.Sub(publishedAt)
				}
			}
		}
		return wwAtRest(d.status(t), len(groups), imageB) &&
			onNova(t, ctx, cloud, tags[0], 2, imageB) && onNova(t, ctx, cloud, tags[1], 2, imageB)
	})
	converged := time.Since(publishedAt)
	for i, tag := range tags {
		list := groupServers(t, ctx, cloud, tag)
		assertGroup(t, list, 2, imageB, groups[i])
		for _, s := range list {
			if first[s.ID] {
				t.Errorf("group %s: server %s of image A survived the new image", groups[i], s.Name)
			}
		}
		t.Logf("group %s: first server on the new image created %.1fs after the publication (interval %v)", groups[i], started[i].Seconds(), interval)
	}
	t.Logf("both groups on the new image, as Nova and the daemon show it, %.1fs after the publication", converged.Seconds())
	for _, tag := range tags {
		for _, s := range groupServers(t, ctx, cloud, tag) {
			if s.Metadata[controller.MetaRebuild] != "" {
				t.Errorf("server %s carries a rebuild request %q: only the image watch was to act", s.Name, s.Metadata[controller.MetaRebuild])
			}
		}
	}
	// Glance itself: the selector's newest image is B, and both are
	// still there (Phoenix deletes no gold image).
	for _, id := range []string{imageA, imageB} {
		img, err := images.Get(ctx, glance, id).Extract()
		if err != nil || img.Status != images.ImageStatusActive || img.Name != run.image {
			t.Errorf("image %s in Glance: %+v, %v; want it active, named %s", id, img, err, run.image)
		}
	}
	// One Glance list per selector and interval, however many groups
	// share it (README, The daemon): the daemon's own count.
	gets, up := wwGlanceGets(t, d), time.Since(daemonStarted)
	perInterval := gets / (up.Seconds() / interval.Seconds())
	t.Logf("the daemon sent Glance %.0f GETs in %.0fs: %.2f per interval of %v for the one selector of both groups",
		gets, up.Seconds(), perInterval, interval)
	if perInterval > 1.6 { // a list per group would be 2 and more
		t.Errorf("%.2f Glance GETs per interval for one selector shared by two groups, want about one", perInterval)
	}
	d.stop(t, syscall.SIGTERM)
	m.Check(t)
}

// TestDevcloudReload runs a real phoenix daemon over one group and
// reloads its file with SIGHUP twice: first with a new
// rollout.progress_deadline, which it applies (and says so) without
// touching a server; then with a file that fails validation, which it
// refuses, naming the file and the fields, and runs on with the
// configuration before: a new gold image then has the group converge on
// it.
func TestDevcloudReload(t *testing.T) {
	if os.Getenv("PHOENIX_DEVCLOUD_CLOUDS") == "" {
		t.Skip("GAP: the real cloud is not configured: set PHOENIX_DEVCLOUD_CLOUDS to the clouds.yaml of examples/devcloud/up.sh")
	}
	t.Parallel()
	run := startDevcloudRun(t, "e2e-reload")
	ctx, cloud, glance, group, tag := run.ctx, run.cloud, run.glance, run.group, run.tag
	published := wwDeleteImagesAtEnd(t, glance)
	imageA, _ := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageA)

	const interval = 5 * time.Second
	cfg := filepath.Join(t.TempDir(), "phoenix.yaml")
	wwWriteConfig(t, cfg, interval, wwGroupYAML(group, run.image, ", progress_deadline: 10m"))

	m := startDevcloudMonitor(t, ctx, run.cloudsFile, "devcloud", watchedGroup{Name: group, Count: 2, Surge: 1})
	d := startLoggedDaemon(t, run.bin, cfg, run.cloudsFile, "--poll", "1s", "--log-level", "info", "--log-format", "json")

	// 1. Built on image A.
	wwWait(t, 4*time.Minute, "the group built on image A", func() bool {
		return groupAtRest(d.status(t), imageA) && onNova(t, ctx, cloud, tag, 2, imageA)
	})
	first := groupServers(t, ctx, cloud, tag)
	assertGroup(t, first, 2, imageA, group)
	if t.Failed() {
		t.FailNow()
	}
	loaded := d.status(t).Config.LoadedAt

	// 2. A new progress_deadline: applied, and said so.
	wwWriteConfig(t, cfg, interval, wwGroupYAML(group, run.image, ", progress_deadline: 7m"))
	hup := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var reloaded wwLogEntry
	wwWait(t, time.Minute, "the daemon to log the reload", func() bool {
		var ok bool
		reloaded, ok = wwLastLog(d, "configuration reloaded")
		return ok
	})
	st := d.status(t)
	if st.Config.Refused != "" || !st.Config.LoadedAt.After(loaded) || len(st.Config.RestartNeeded) != 0 {
		t.Errorf("status after the reload: loaded at %v (before %v), refused %q, restart needed %v; want a new load, nothing refused or waiting",
			st.Config.LoadedAt, loaded, st.Config.Refused, st.Config.RestartNeeded)
	}
	wantChanged := []string{"groups[" + group + "].rollout.progress_deadline"}
	if !slices.Equal(st.Config.Changed, wantChanged) {
		t.Errorf("status config.changed %v, want %v", st.Config.Changed, wantChanged)
	}
	if got := reloaded.strings("changed"); !slices.Equal(got, wantChanged) || reloaded.num("restarted_or_stopped") != 1 {
		t.Errorf("the reload's log line names %v and %v group restarted, want %v and 1: %s", got, reloaded.num("restarted_or_stopped"), wantChanged, reloaded.raw)
	}
	loaded = st.Config.LoadedAt
	// The new deadline is no new revision: the group, restarted with it,
	// looks again and replaces nothing.
	wwWait(t, time.Minute, "the group to reconcile after the reload", func() bool {
		st := d.status(t)
		return len(st.Groups) == 1 && st.Groups[0].LastReconcile.After(hup) && groupAtRest(st, imageA)
	})
	wwSameServers(t, groupServers(t, ctx, cloud, tag), first, "after the reload")

	// 3. A file that fails validation: a misspelt field and a wrong type,
	// beside another new deadline that must not apply.
	bad := strings.Replace(wwGroupYAML(group, run.image, ", progress_deadline: 5m, progress_dedline: 5m"),
		"healthy_threshold: 2", "healthy_threshold: two", 1)
	wwWriteConfig(t, cfg, interval, bad)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var refused wwLogEntry
	wwWait(t, time.Minute, "the daemon to log the refusal", func() bool {
		var ok bool
		refused, ok = wwLastLog(d, "configuration refused")
		return ok
	})
	for _, want := range []string{cfg, `groups[0].rollout (line 10): unknown field "progress_dedline"`, "groups[0].health.healthy_threshold (line 15): expected a whole number"} {
		if !strings.Contains(refused.str("error"), want) {
			t.Errorf("the refusal's log line does not name %s: %s", want, refused.raw)
		}
		if st := d.status(t); !strings.Contains(st.Config.Refused, want) {
			t.Errorf("status config.refused does not name %s: %q", want, st.Config.Refused)
		}
	}
	if refused.str("level") != "error" {
		t.Errorf("the refusal is logged at %q, want error", refused.str("level"))
	}
	st = d.status(t)
	if !st.Config.LoadedAt.Equal(loaded) || !slices.Equal(st.Config.Changed, wantChanged) || len(st.Groups) != 1 {
		t.Errorf("status after the refusal: loaded at %v, changed %v, %d groups; want the reload before (%v, %v) running on",
			st.Config.LoadedAt, st.Config.Changed, len(st.Groups), loaded, wantChanged)
	}
	if n := len(d.logLines(`"configuration reloaded"`)); n != 1 {
		t.Errorf("%d reloads logged, want the one before the refusal", n)
	}
	if t.Failed() {
		t.FailNow()
	}

	// 4. The daemon runs on with the configuration before: a new gold
	// image is rolled out.
	waitNextSecond()
	imageB, publishedAt := publishImageTimed(t, ctx, glance, run.image)
	*published = append(*published, imageB)
	wwWait(t, 4*time.Minute, "the group to converge on image B", func() bool {
		return groupAtRest(d.status(t), imageB) && onNova(t, ctx, cloud, tag, 2, imageB)
	})
	t.Logf("the group converged on the new image %.1fs after its publication, under the reloaded configuration", time.Since(publishedAt).Seconds())
	after := groupServers(t, ctx, cloud, tag)
	assertGroup(t, after, 2, imageB, group)
	for _, s := range after {
		if slices.ContainsFunc(first, func(f provisioner.Server) bool { return f.ID == s.ID }) {
			t.Errorf("server %s of image A survived the new image", s.Name)
		}
	}
	if st := d.status(t); !strings.Contains(st.Config.Refused, "progress_dedline") || !st.Config.LoadedAt.Equal(loaded) {
		t.Errorf("status after the rollout: refused %q, loaded at %v; want the refusal still shown and the load before it", st.Config.Refused, st.Config.LoadedAt)
	}
	d.stop(t, syscall.SIGTERM)
	m.Check(t)
}

// wwGroupYAML is one group of two on the shared gold image name, its
// health checked at the devcloud responder; rollout holds more rollout
// settings, each after a comma.
func wwGroupYAML(name, image, rollout string) string {
	return fmt.Sprintf(`  - name: %s
    count: 2
    image: {name: %s, newest: true}
    flavor: m1.small
    networks: [phoenix-net]
    rollout: {max_surge: 1, min_ready: 1s%s}
    health:
      http: {port: %d, path: /healthz}
      interval: 1s
      timeout: 1s
      healthy_threshold: 2
      grace: 60s
`, name, image, rollout, responderPort)
}

// wwWriteConfig writes a daemon configuration of the groups to path and
// returns it. It writes a file beside it and renames it over, so that a
// reload never reads half a file.
func wwWriteConfig(t *testing.T, path string, interval time.Duration, groups ...string) string {
	t.Helper()
	yaml := fmt.Sprintf("cloud: devcloud\ncontroller:\n  interval: %s\ngroups:\n%s", interval, strings.Join(groups, ""))
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// wwWait polls cond every half second (each look lists Nova) until it
// holds, failing the test after patience.
func wwWait(t *testing.T, patience time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		time.Sleep(500 * time.Millisecond) // polling the daemon and the cloud
	}
}

// wwAtRest says whether the daemon's n groups have all converged on
// image.
func wwAtRest(st daemon.Status, n int, image string) bool {
	if !convergedOn(st, n, image) {
		return false
	}
	for _, g := range st.Groups {
		if !g.Status.Converged {
			return false
		}
	}
	return true
}

// wwSameServers fails the test unless got are exactly the servers want.
func wwSameServers(t *testing.T, got, want []provisioner.Server, when string) {
	t.Helper()
	ids := func(l []provisioner.Server) []string {
		var out []string
		for _, s := range l {
			out = append(out, s.ID)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Errorf("%s the group holds %v, want the servers before %v", when, ids(got), ids(want))
	}
}

// wwDeleteServersAtEnd deletes the servers of a group the run does not
// name when the test ends (after the daemon stopped: registered before
// it starts).
func wwDeleteServersAtEnd(t *testing.T, cloud *openstack.Cloud, tag string) {
	t.Cleanup(func() {
		list, _ := cloud.ListServers(context.Background(), tag)
		for _, s := range list {
			_ = cloud.DeleteServer(context.Background(), s.ID)
		}
	})
}

// wwDeleteImagesAtEnd deletes the images appended to the list when the
// test ends, once the daemon has stopped (register it before starting
// the daemon): an image deleted under a running daemon would start a
// rollout back.
func wwDeleteImagesAtEnd(t *testing.T, glance *gophercloud.ServiceClient) *[]string {
	ids := new([]string)
	t.Cleanup(func() {
		for _, id := range *ids {
			_ = images.Delete(context.Background(), glance, id).ExtractErr()
		}
	})
	return ids
}

// wwLogEntry is one line of a daemon's JSON log.
type wwLogEntry struct {
	raw    string
	fields map[string]any
}

func (e wwLogEntry) str(key string) string {
	s, _ := e.fields[key].(string)
	return s
}

func (e wwLogEntry) num(key string) float64 {
	n, _ := e.fields[key].(float64)
	return n
}

func (e wwLogEntry) strings(key string) []string {
	var out []string
	l, _ := e.fields[key].([]any)
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// wwLastLog is the last line of the daemon's JSON log whose message is
// msg.
func wwLastLog(d *loggedDaemon, msg string) (wwLogEntry, bool) {
	lines := d.logLines(`"` + msg)
	for i := len(lines) - 1; i >= 0; i-- {
		var f map[string]any
		if json.Unmarshal([]byte(lines[i]), &f) == nil && strings.HasPrefix(fmt.Sprint(f["msg"]), msg) {
			return wwLogEntry{raw: lines[i], fields: f}, true
		}
	}
	return wwLogEntry{}, false
}

// wwGlanceGets is how many GETs the daemon sent Glance, by its own
// metrics.
func wwGlanceGets(t *testing.T, d *loggedDaemon) float64 {
	t.Helper()
	var n float64
	for _, m := range metricsOf(t, d.url)["phoenix_cloud_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["service"] == "image" && labels["method"] == http.MethodGet {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}
