// Command rationctl is the command-line client of a ration cluster: it
// defines services and feeds them items (OwnerService), acts as a worker by
// hand (WorkerService), answers monitoring questions (InsightService) and
// manages membership and backups (ClusterService).
//
// Every RPC of the four services is reachable from a subcommand. Calls go
// through api/client, which owns failover: they go to the first address in
// --addr (later calls of one command to the node that answered last) and
// move on to the next one when a node is unreachable, times out or answers
// Unavailable, so a list of all members keeps working while a minority of
// them is down; a rate-limited call waits as told, within --retry-for.
// Writes always carry a request id (given with --request-id or generated),
// so a write retried on another node takes effect once.
//
// Credentials: owner, insight and cluster calls send "Authorization: Bearer
// <--token>" (the admin token, or a service's owner token for that
// service's calls), worker calls send "Authorization: Bearer
// <--worker-secret>". Both can come from the environment (RATION_TOKEN, else
// RATION_ADMIN_TOKEN; RATION_WORKER_SECRET), as can the addresses
// (RATION_ADDR).
//
// Output is a table by default; -o json prints the response message as
// protobuf JSON with the proto field names (snake_case) of api/ration/v1,
// as README's curl examples spell them. Streams (results export, activity
// --follow) print JSON lines.
package main
