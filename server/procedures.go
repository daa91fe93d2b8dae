package server

import (
	"github.com/rationhq/ration/api/ration/peer/v1/peerv1connect"
	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// procedure is what the server knows about one RPC beyond its handler:
// who may call it, the rate limits it is under, and whether its reply
// shows an owner token the leader made. A write's command is the request
// itself in a Command (fsm.NewCommand), and its reply the command's answer
// (fsm.Answer); Heartbeat, which the log carries in a HeartbeatBatch, is
// the one write with a handler of its own.
type procedure struct {
	role  role
	limit limitedOp
	// issuesOwnerToken: the leader makes a new owner token for the command
	// (only its hash enters the log) and shows it in the reply.
	issuesOwnerToken bool
}

// procedures is the one table of RPCs, by full procedure name; a procedure
// missing from it is admin-only. Tests check that every RPC has an entry,
// and that the protos' comments and README's table of roles say the same.
var procedures = map[string]procedure{
	rationv1connect.OwnerServiceCreateServiceProcedure:    {role: roleAdmin, issuesOwnerToken: true},
	rationv1connect.OwnerServiceUpdateServiceProcedure:    {role: roleOwner},
	rationv1connect.OwnerServiceGetServiceProcedure:       {role: roleOwner},
	rationv1connect.OwnerServiceListServicesProcedure:     {role: roleAdmin},
	rationv1connect.OwnerServiceRevokeServiceProcedure:    {role: roleOwner},
	rationv1connect.OwnerServiceReinstateServiceProcedure: {role: roleOwner},
	rationv1connect.OwnerServiceDeleteServiceProcedure:    {role: roleOwner},
	rationv1connect.OwnerServiceAddItemsProcedure:         {role: roleOwner},
	rationv1connect.OwnerServiceAddCanariesProcedure:      {role: roleOwner},
	rationv1connect.OwnerServiceListItemsProcedure:        {role: roleOwner},
	rationv1connect.OwnerServiceDeactivateWorkerProcedure: {role: roleOwner},
	rationv1connect.OwnerServiceReactivateWorkerProcedure: {role: roleOwner},
	rationv1connect.OwnerServiceRevertWorkerProcedure:     {role: roleOwner},
	rationv1connect.OwnerServiceExportResultsProcedure:    {role: roleOwner},
	rationv1connect.OwnerServiceAckResultsProcedure:       {role: roleOwner},
	rationv1connect.OwnerServiceRotateOwnerTokenProcedure: {role: roleOwner, issuesOwnerToken: true},

	rationv1connect.WorkerServiceRegisterProcedure:      {role: roleWorker, limit: limitRegister},
	rationv1connect.WorkerServiceUnregisterProcedure:    {role: roleWorker},
	rationv1connect.WorkerServiceCheckServiceProcedure:  {role: rolePublic},
	rationv1connect.WorkerServiceAcquireProcedure:       {role: roleWorker, limit: limitAcquire},
	rationv1connect.WorkerServiceHeartbeatProcedure:     {role: roleWorker},
	rationv1connect.WorkerServiceSubmitProcedure:        {role: roleWorker},
	rationv1connect.WorkerServiceReleaseProcedure:       {role: roleWorker},
	rationv1connect.WorkerServiceListMyBucketsProcedure: {role: roleWorker},

	// An owner token must name its service; without one these span all.
	rationv1connect.InsightServiceGetStatsProcedure:      {role: roleOwner},
	rationv1connect.InsightServiceListWorkersProcedure:   {role: roleOwner},
	rationv1connect.InsightServiceListBucketsProcedure:   {role: roleOwner},
	rationv1connect.InsightServiceListActivityProcedure:  {role: roleOwner},
	rationv1connect.InsightServiceExplainProcedure:       {role: roleOwner},
	rationv1connect.InsightServiceWatchActivityProcedure: {role: roleOwner},

	rationv1connect.ClusterServiceStatusProcedure:             {role: roleAdmin},
	rationv1connect.ClusterServiceJoinProcedure:               {role: roleAdmin},
	rationv1connect.ClusterServiceRemoveProcedure:             {role: roleAdmin},
	rationv1connect.ClusterServiceTransferLeadershipProcedure: {role: roleAdmin},
	rationv1connect.ClusterServiceSaveSnapshotProcedure:       {role: roleAdmin},
	rationv1connect.ClusterServiceRestoreProcedure:            {role: roleAdmin},

	peerv1connect.PeerServiceReadIndexProcedure: {role: roleAdmin},
}

// procedureOf returns what the table says of a procedure: an unknown one
// is admin-only, without rate limits.
func procedureOf(name string) procedure {
	return procedures[name] // the zero procedure is roleAdmin, noLimit
}

// role says who may call a procedure.
type role int

const (
	roleAdmin  role = iota // the admin token, when one is configured
	roleOwner              // the admin token, or the owner token of the service the request names
	roleWorker             // a worker's secret
	rolePublic             // anyone
)

func (r role) String() string {
	switch r {
	case roleOwner:
		return "owner"
	case roleWorker:
		return "worker"
	case rolePublic:
		return "public"
	}
	return "admin"
}
