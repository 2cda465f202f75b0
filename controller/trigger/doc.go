// Package trigger accepts events that make Phoenix act now rather than at
// its next reconcile: a new image was published, a security patch must be
// rolled out, a server is compromised. Events arrive over HTTP from
// systems outside Phoenix (an image pipeline, a vulnerability scanner, an
// intrusion detector), and each one can start a rebuild of a whole fleet,
// so the package's job is above all to refuse what it should not act on.
//
// # Events
//
// An event is one JSON object ([Event]); [Parse] decodes and validates it.
// Parsing is strict — unknown fields, fields given twice, fields that mean
// nothing for the event's type, and anything after the object are refused —
// because a sender's mistake that is silently ignored becomes a rebuild
// that did not happen, or one that did and was not meant to.
//
//	image.published       re-resolve image selectors now; image optional
//	security.patch        rebuild the named groups, or every group using
//	                      image (or both); reason required
//	instance.compromised  take server out of traffic and rebuild everything
//	                      sharing its image and revision; reason required
//
// examples/events holds one sample of each and documents the fields.
//
// # Signature
//
// The body is signed with a shared secret: HMAC-SHA256 over the
// timestamp (decimal Unix seconds), a ".", and the raw body, sent as
//
//	X-Phoenix-Timestamp: 1778750000
//	X-Phoenix-Signature: sha256=<64 lower-case hex digits>
//
// ([Sign], [Verify]). Signing the raw bytes, not a re-encoding, means the
// receiver checks exactly what it parses. Signing the timestamp with the
// body is what stops a replay: someone who captured a signed request
// cannot change its timestamp without the secret, so the request is only
// good while that timestamp is within the window (five minutes either way
// by default: enough for clock skew and retries, short enough that a
// captured request soon stops working). The comparison is constant-time,
// and an error says which check failed but never the secret or the
// signature that was expected, so an error message helps the sender debug
// without helping anyone forge.
//
// # Replay memory
//
// Within the window a captured request could still be sent again; the
// [Handler] therefore remembers each accepted event id for twice the
// window — the longest a request accepted now stays replayable, since its
// timestamp may lie up to one window ahead of the receiver's clock — and
// answers a repeat with 409. That same rule makes sending safe to retry:
// an attempt whose answer was lost shows up as 409 "already accepted" on
// the next attempt ([Send]). The memory is bounded (100,000 ids); past that
// the oldest ids are forgotten early, which a flood of validly signed
// events could exploit only by holding the secret already.
//
// The id is reserved before the event is dispatched, so two identical
// requests arriving at once dispatch once; if the dispatch fails, the
// reservation is released so that the sender may send the event again.
// A repeat that arrives while the dispatch is under way (a sender that
// gave up waiting for the answer and sent again) is answered 503 with
// Retry-After: the dispatch may still fail, and a 409 would tell the
// sender its event got through. Once the dispatch is done, a repeat gets
// the outcome: 409 if it was accepted, a dispatch of its own if not.
//
// # Refusals change nothing
//
// Every check runs before anything acts: a request refused for its
// method, size, signature, timestamp, syntax, content or id never reaches
// the [Dispatcher], and an event the dispatcher refuses (an unknown group,
// image or server: 422; cannot act now: 503) leaves no trace in the replay
// memory. A refused event can therefore be fixed and sent again, and an
// attacker without the secret can at most make Phoenix log refusals. Each
// refusal is logged at Info with its status, reason, remote address and
// event id when known — never the body or the headers, which would put
// signatures in the logs.
//
// # Answers
//
//	202  accepted and dispatched: {"id": "<id>", "status": "accepted"}
//	400  the body is not one JSON object
//	401  signature or timestamp header missing, malformed or wrong, or the
//	     timestamp outside the window
//	405  not a POST (Allow: POST)
//	409  an event with this id was already accepted
//	413  the body is larger than MaxBody (64 KiB by default)
//	422  the event is invalid, or names an unknown group, image or server
//	503  no secret configured, the dispatcher cannot act now, or another
//	     request with this id is being dispatched (Retry-After: 1)
//
// Every refusal is {"error": "<message>"} with Content-Type
// application/json.
//
// # Secret
//
// [ReadSecret] reads the secret from a file, trimmed of surrounding
// whitespace, and refuses one shorter than [MinSecret] (32 bytes): a
// short key is the one part of HMAC an attacker can guess. It warns when
// group or others may read the file. The Handler asks its Secret function
// on each request, so the caller can reload the file without restarting.
//
// # Rotation
//
// A secret is rotated without refusing a single event by accepting two
// for a while: the Handler's Previous function returns the one being
// rotated out, and [VerifyAny] accepts a signature made with either
// (comparing both, so the time taken does not tell which matched). Each
// event accepted with the previous secret is logged as such, so the
// senders still using it can be found before it is removed.
package trigger
