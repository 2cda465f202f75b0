package controller

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/phoenix-ops/phoenix/controller/config"
	"github.com/phoenix-ops/phoenix/controller/plan"
	"github.com/phoenix-ops/phoenix/provisioner"
)

// The record schema: everything Phoenix writes on the cloud to find its
// work again after a restart, in one place. The tag makes a server the
// group's from its create call on; the metadata says which revision it is
// and, before every slow or destructive step, which phase it is in and
// since when; the group's records (a halt, the rollout's progress, a
// promoted canary) are written on every server of the group that can take
// them; a handover's steps are written on its volume; snapshots carry the
// properties retention finds them by. Every time is written by formatTime
// and read by parseTime.
const tagPrefix = "phoenix-group:"

// GroupTag is the Nova tag that marks a server as a member of group.
func GroupTag(group string) string { return tagPrefix + group }

// GroupOfTags names the group a server's tags make it a member of.
func GroupOfTags(tags []string) (string, bool) {
	for _, t := range tags {
		if g, ok := strings.CutPrefix(t, tagPrefix); ok && g != "" {
			return g, true
		}
	}
	return "", false
}

// Server metadata.
const (
	MetaGroup     = "phoenix:group"
	MetaRevision  = "phoenix:revision"
	MetaImage     = "phoenix:image"
	MetaRequestID = "phoenix:request-id"
	MetaRollout   = "phoenix:rollout"
	MetaCreatedAt = "phoenix:created-at"
	// MetaPhase is one of plan's phases, MetaPhaseAt when it began,
	// MetaReason why; MetaDrainThen what follows a drain.
	MetaPhase     = "phoenix:phase"
	MetaPhaseAt   = "phoenix:phase-at"
	MetaReason    = "phoenix:reason"
	MetaDrainThen = "phoenix:drain-then"
	// MetaRebuild is an event's request to replace the server (a security
	// patch, a twin of a compromised server); MetaCompromised marks a
	// server reported compromised.
	MetaRebuild     = "phoenix:rebuild"
	MetaCompromised = "phoenix:compromised"
	// MetaRebuildUrgent is "true" when the rebuild asked for is urgent: it
	// does not wait for a hold, a window or a blocker.
	MetaRebuildUrgent = "phoenix:rebuild-urgent"
	// MetaProtected is "true" on a server the operator protected (`phoenix
	// protect`, or `openstack server set --property phoenix:protected=true`),
	// MetaProtectReason why: it is never replaced or removed unless it is
	// compromised.
	MetaProtected     = "phoenix:protected"
	MetaProtectReason = "phoenix:protected-reason"
	// MetaReadyAt is when the server first served: it is never taken for
	// a boot that missed its deadline, and a canary's bake runs from it.
	MetaReadyAt = "phoenix:ready-at"
	// MetaPreviousImage and MetaPreviousRevision are what the server
	// replaced, written at its create: what the group last ran, for a
	// rollback.
	MetaPreviousImage    = "phoenix:previous-image"
	MetaPreviousRevision = "phoenix:previous-revision"
	// MetaLocation names the location of a placed group the server was
	// created in, for people: the location a server is in is where it
	// was listed.
	MetaLocation = "phoenix:location"
	// MetaLocationDown + a location's name is, on the servers of the
	// other locations of a placed group, since when that location is
	// down, or "up" once it is back.
	MetaLocationDown = "phoenix:down:"

	// The group's records, on every server that can take them:
	// MetaHalted the image@revision whose rollout halted and
	// MetaHaltReason why; MetaCanaryPassed the image@revision whose
	// canary `phoenix resume` promoted, and when; MetaProgress the
	// rollout's failure count ("image@revision failures at"),
	// MetaProgressBoots the failed boots it counts, MetaProgressReason the
	// last failure.
	MetaHalted         = "phoenix:halted"
	MetaHaltReason     = "phoenix:halt-reason"
	MetaCanaryPassed   = "phoenix:canary-passed"
	MetaProgress       = "phoenix:progress"
	MetaProgressBoots  = "phoenix:progress-boots"
	MetaProgressReason = "phoenix:progress-reason"
	// MetaRejected is the rollout a rollback rejected and the image the
	// group went back to ("image@revision image at"), MetaRejectReason
	// why; it is also written at every create, so that it outlives the
	// servers it was first written on.
	MetaRejected     = "phoenix:rejected"
	MetaRejectReason = "phoenix:rejected-reason"
	// MetaHeld is when `phoenix hold` held the group, MetaHeldBy who and
	// MetaHeldReason why: no voluntary replacement starts until `phoenix
	// release` clears them. It is written at every create too.
	MetaHeld       = "phoenix:held"
	MetaHeldBy     = "phoenix:held-by"
	MetaHeldReason = "phoenix:held-reason"
	// MetaPromoted is the last image the group, a stage, tagged in
	// Glance and when ("image at"), MetaPromotedTag the tag: written once
	// Glance took it, and at every create, so that a restart neither tags
	// it again nor forgets to take the tag back if the group rejects it.
	MetaPromoted    = "phoenix:promoted"
	MetaPromotedTag = "phoenix:promoted-tag"
)

// Volume metadata (Cinder) of the group's data volumes: the group's mark
// and a handover's steps, each written before it is taken.
const (
	PropSlot         = "phoenix_slot"
	PropHandoverFrom = "phoenix_handover_from"
	PropHandoverTo   = "phoenix_handover_to"
	PropHandoverStep = "phoenix_handover_step"
	PropHandoverAt   = "phoenix_handover_at"
	PropHandoverWhy  = "phoenix_handover_why"
	// PropHandoverRollout is the new server's image and revision, so a
	// handover rolled back after that server is gone is still judged
	// against the rollout it belonged to.
	PropHandoverRollout = "phoenix_handover_rollout"
)

// Properties of the snapshots Phoenix takes (Glance images of servers,
// Cinder snapshots of volumes), by which it finds them again: after a
// restart, never to take one twice; for retention, which touches no
// other.
const (
	PropGroup   = "phoenix_group"
	PropServer  = "phoenix_server"
	PropVolume  = "phoenix_volume"
	PropKind    = "phoenix_kind"
	PropTakenAt = "phoenix_taken_at"

	KindPreDelete   = "pre-delete"   // a server's disk, or a volume, before the server's delete
	KindPreHandover = "pre-handover" // a volume before it moved
	KindScheduled   = "scheduled"    // a volume on backup.every's schedule
)

// formatTime and parseTime are the one encoding of a time in a record.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// maxValue is the longest metadata value Nova keeps.
const maxValue = 255

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Revision identifies everything in a group's spec that shapes a server
// except the image, which drifts on its own (a new image is not a new
// spec). Two specs with the same revision boot identical servers from the
// same image. Availability zones are left out: they say where servers go,
// not what they are.
func Revision(g config.Group) string {
	secGroups := append([]string(nil), g.SecurityGroups...)
	sort.Strings(secGroups)
	userData := sha256.Sum256(g.UserData)
	doc := struct {
		Flavor         string            `json:"flavor"`
		Networks       []string          `json:"networks"`
		KeyName        string            `json:"key_name"`
		SecurityGroups []string          `json:"security_groups"`
		ServerGroup    string            `json:"server_group"`
		UserData       string            `json:"user_data"`
		Metadata       map[string]string `json:"metadata"`
	}{g.Flavor, g.Networks, g.KeyName, secGroups, g.ServerGroup, hex.EncodeToString(userData[:]), g.Metadata}
	b, _ := json.Marshal(doc) // map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:12]
}

// rolloutKey names what a halt, a promotion or a progress record is
// about: a revision of the spec on one image. A new image or a new spec is
// a new rollout.
func rolloutKey(imageID, revision string) string { return imageID + "@" + revision }

// acceptsMetadata reports whether Nova lets a server's metadata change: only
// in a settled state (ACTIVE, SHUTOFF, PAUSED, SUSPENDED) with no task in
// progress; otherwise it answers 409. A server that cannot take the record
// is not serving (BUILD, ERROR), so its delete needs none: a restarted
// controller decides to delete it again from what it sees.
func acceptsMetadata(status, taskState string) bool {
	switch status {
	case plan.StatusActive, plan.StatusShutoff, plan.StatusPaused, plan.StatusSuspended:
		return taskState == ""
	}
	return false
}

// holdsRecords says whether a server takes the group's records: it
// accepts metadata and is not on its way out.
func holdsRecords(s provisioner.Server) bool {
	return !s.Gone() && acceptsMetadata(s.Status, s.TaskState) && s.Metadata[MetaPhase] == ""
}

// planServer reads what the plan needs from a server: the cloud's view
// plus Phoenix's record in its metadata. Health is left unknown.
func planServer(s provisioner.Server) plan.Server {
	p := plan.Server{
		ID:          s.ID,
		Name:        s.Name,
		Status:      s.Status,
		TaskState:   s.TaskState,
		Zone:        s.AvailabilityZone,
		ImageID:     s.ImageID,
		Revision:    s.Metadata[MetaRevision],
		Created:     s.Created,
		Phase:       s.Metadata[MetaPhase],
		Reason:      s.Metadata[MetaReason],
		Fault:       s.Fault,
		RebuildMark: s.Metadata[MetaRebuild],
		Compromised: s.Metadata[MetaCompromised],
		DrainThen:   s.Metadata[MetaDrainThen],
		Volumes:     s.Volumes,
	}
	if t, ok := parseTime(s.Metadata[MetaCreatedAt]); ok {
		p.Created = t
	}
	p.RebuildUrgent = p.RebuildMark != "" && strings.EqualFold(s.Metadata[MetaRebuildUrgent], "true")
	if strings.EqualFold(strings.TrimSpace(s.Metadata[MetaProtected]), "true") {
		p.Protected = cmp.Or(s.Metadata[MetaProtectReason], MetaProtected+"=true")
	}
	p.Previous = plan.Ref{ImageID: s.Metadata[MetaPreviousImage], Revision: s.Metadata[MetaPreviousRevision]}
	if t, ok := parseTime(s.Metadata[MetaReadyAt]); ok {
		p.ReadyAt = t
	}
	if p.Phase == plan.PhaseDraining {
		// A drain whose start cannot be read started now: it is never
		// cut short.
		if t, ok := parseTime(s.Metadata[MetaPhaseAt]); ok {
			p.DrainStart = t
		}
	}
	return p
}

// groupRecord is what the group's servers record of the rollout to one
// image@revision.
type groupRecord struct {
	// halted is why the rollout halted ("" when it did not); haltSeen is
	// set when some server carries the halt.
	halted   string
	haltSeen bool
	// promoted is set when `phoenix resume` promoted the canary, at
	// promotedAt (zero in a record older than the time).
	promoted   bool
	promotedAt time.Time
	// progress is the rollout's progress record, and progressSeen whether
	// any server holds one; holders counts the servers that can hold
	// records at all.
	progress     plan.Progress
	progressSeen bool
	holders      int
	// rejection is the latest rollback recorded on any server.
	rejection rejection
	// hold is the latest hold recorded on any server.
	hold hold
	// staged is the latest image the group recorded tagging, a stage.
	staged plan.PromotedImage
}

// hold is `phoenix hold` on record: when, by whom, why.
type hold struct {
	at         time.Time
	by, reason string
}

func (h hold) isZero() bool { return h.at.IsZero() }

func (h hold) String() string {
	return fmt.Sprintf("by %s at %s: %s", cmp.Or(h.by, "(unknown)"), h.at.UTC().Format(time.RFC3339), cmp.Or(h.reason, "(no reason given)"))
}

// holdMetadata records h; a zero h clears the hold.
func holdMetadata(h hold) map[string]string {
	if h.isZero() {
		return map[string]string{MetaHeld: "", MetaHeldBy: "", MetaHeldReason: ""}
	}
	return map[string]string{MetaHeld: formatTime(h.at), MetaHeldBy: truncate(h.by, maxValue), MetaHeldReason: truncate(h.reason, maxValue)}
}

func parseHold(md map[string]string) (hold, bool) {
	at, ok := parseTime(md[MetaHeld])
	if !ok {
		return hold{}, false
	}
	return hold{at: at, by: md[MetaHeldBy], reason: md[MetaHeldReason]}, true
}

// promotedMetadata records that the group tagged an image. One with no
// image records, at p.At, that the tag was taken back: the latest record
// wins, so a server created with the older one does not bring it back.
func promotedMetadata(p plan.PromotedImage) map[string]string {
	if p.ImageID == "" {
		return map[string]string{MetaPromoted: "- " + formatTime(p.At), MetaPromotedTag: ""}
	}
	return map[string]string{MetaPromoted: p.ImageID + " " + formatTime(p.At), MetaPromotedTag: p.Tag}
}

func parsePromoted(md map[string]string) (plan.PromotedImage, bool) {
	img, at, _ := strings.Cut(md[MetaPromoted], " ")
	t, ok := parseTime(at)
	switch {
	case !ok:
		return plan.PromotedImage{}, false
	case img == "-":
		return plan.PromotedImage{At: t}, true
	case img == "" || md[MetaPromotedTag] == "":
		return plan.PromotedImage{}, false
	}
	return plan.PromotedImage{ImageID: img, Tag: md[MetaPromotedTag], At: t}, true
}

// rejection is a rollout undone: its image and revision, the image the
// group went back to, when, and why.
type rejection struct {
	rejected plan.Ref
	to       string
	at       time.Time
	reason   string
}

func (j rejection) isZero() bool { return j.rejected.IsZero() }

// applies says whether the rejection is of image on revision: then the
// group runs j.to instead.
func (j rejection) applies(image, revision string) bool {
	return !j.isZero() && j.rejected == plan.Ref{ImageID: image, Revision: revision}
}

// rejectionMetadata records j.
func rejectionMetadata(j rejection) map[string]string {
	return map[string]string{
		MetaRejected:     strings.Join([]string{rolloutKey(j.rejected.ImageID, j.rejected.Revision), j.to, formatTime(j.at)}, " "),
		MetaRejectReason: truncate(j.reason, maxValue),
	}
}

func parseRejection(md map[string]string) (rejection, bool) {
	f := strings.Fields(md[MetaRejected])
	if len(f) != 3 {
		return rejection{}, false
	}
	img, rev, ok := strings.Cut(f[0], "@")
	at, okAt := parseTime(f[2])
	if !ok || img == "" || f[1] == "" || !okAt {
		return rejection{}, false
	}
	return rejection{rejected: plan.Ref{ImageID: img, Revision: rev}, to: f[1], at: at, reason: md[MetaRejectReason]}, true
}

// readRecord reads the group's records about key from its servers. Of
// several progress records (a write that reached only some servers) the
// one that counts the most failures, and then the latest, wins.
func readRecord(servers []provisioner.Server, key string) groupRecord {
	var r groupRecord
	for _, s := range servers {
		if holdsRecords(s) {
			r.holders++
		}
		md := s.Metadata
		if md[MetaHalted] == key {
			r.haltSeen = true
			r.halted = md[MetaHaltReason]
			if r.halted == "" {
				r.halted = "halted"
			}
		}
		if k, at, _ := strings.Cut(md[MetaCanaryPassed], " "); k == key {
			r.promoted = true
			if t, ok := parseTime(at); ok && t.After(r.promotedAt) {
				r.promotedAt = t
			}
		}
		if j, ok := parseRejection(md); ok && j.at.After(r.rejection.at) {
			r.rejection = j
		}
		if h, ok := parseHold(md); ok && h.at.After(r.hold.at) {
			r.hold = h
		}
		if p, ok := parsePromoted(md); ok && p.At.After(r.staged.At) {
			r.staged = p
		}
		// Progress is read only where it is kept up to date: a server on
		// its way out keeps what was written before it left.
		if p, ok := parseProgress(md, key); ok && holdsRecords(s) {
			if !r.progressSeen || p.Failures > r.progress.Failures || p.Failures == r.progress.Failures && p.At.After(r.progress.At) {
				r.progress = p
			}
			r.progressSeen = true
		}
	}
	return r
}

// progressMetadata is the record of p for key; an empty p clears it.
func progressMetadata(key string, p plan.Progress) map[string]string {
	if p.IsZero() {
		return map[string]string{MetaProgress: "", MetaProgressBoots: "", MetaProgressReason: ""}
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return formatTime(t)
	}
	return map[string]string{
		MetaProgress:       strings.Join([]string{key, strconv.Itoa(p.Failures), at(p.At)}, " "),
		MetaProgressBoots:  truncate(strings.Join(p.Counted, " "), maxValue),
		MetaProgressReason: truncate(p.LastFailure, maxValue),
	}
}

func parseProgress(md map[string]string, key string) (plan.Progress, bool) {
	f := strings.Fields(md[MetaProgress])
	if len(f) != 3 || f[0] != key {
		return plan.Progress{}, false
	}
	var p plan.Progress
	p.Failures, _ = strconv.Atoi(f[1])
	p.At, _ = parseTime(f[2])
	p.Counted = strings.Fields(md[MetaProgressBoots])
	p.LastFailure = md[MetaProgressReason]
	return p, true
}

// haltMetadata records the halt of key.
func haltMetadata(key, reason string) map[string]string {
	return map[string]string{MetaHalted: key, MetaHaltReason: truncate(reason, maxValue)}
}

// promotionMetadata records the promotion of key's canary at.
func promotionMetadata(key string, at time.Time) map[string]string {
	return map[string]string{MetaCanaryPassed: key + " " + formatTime(at)}
}
