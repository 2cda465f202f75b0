// Package openstack implements the services of provisioner.Cloud on
// gophercloud v2: the one code path Phoenix uses to every cloud, real or
// simulated. Cloud.Services hands them out, a service missing from the
// catalog as a provisioner.Absent client.
//
// What it keeps:
//   - Credentials come from clouds.yaml (gophercloud's config/clouds) and
//     the OS_* variables, as the OpenStack CLI reads them: password, token
//     or application credential, variables beside OS_CLOUD winning, with
//     re-authentication on for long rollouts. What the operator got wrong
//     (no such cloud, no clouds.yaml, credentials Keystone refuses) is a
//     ConfigError, so that callers stop instead of retrying.
//   - retryablehttp sits under gophercloud and retries only what is safe: a
//     server create is never sent twice unless the cloud provably did
//     nothing (429, or no connection). An unanswered create reports
//     provisioner.ErrUnknownOutcome and the next list by tag settles it.
//   - Every request has a timeout.
//   - A group's servers come from one paginated list filtered by tag (Nova
//     microversion 2.52), never from one request per server; the tag is
//     checked on every returned server because Nova ignores unknown filters.
package openstack
