package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	statev1 "github.com/rationhq/ration/api/ration/state/v1"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// operations is the one table of what the state machine does: an entry per
// operation a Command carries, in the order of Command's fields. Nothing
// else in the package switches over a command's operation.
//
// Adding an operation takes its request in Command's op and its response in
// CommandResult's value (both in api/ration/state/v1/command.proto), a file
// here with its checks and its change, and an entry below.
var operations = newOpTable(
	// Services.
	op[*rationv1.CreateServiceRequest, *rationv1.CreateServiceResponse]{
		action: ActCreateService, issuesOwnerToken: true, validate: validateCreateService,
		check: func(x *txn, r *rationv1.CreateServiceRequest) error { _, _, err := x.checkCreateService(r); return err },
		apply: (*txn).createService,
	},
	op[*rationv1.UpdateServiceRequest, *rationv1.UpdateServiceResponse]{
		action: ActUpdateService, owner: true, validate: validateUpdateService,
		check: func(x *txn, r *rationv1.UpdateServiceRequest) error { _, _, err := x.checkUpdateService(r); return err },
		apply: (*txn).updateService,
	},
	op[*rationv1.RevokeServiceRequest, *rationv1.RevokeServiceResponse]{
		action: ActRevokeService, owner: true, validate: validateRevokeService,
		check: func(x *txn, r *rationv1.RevokeServiceRequest) error { _, err := x.checkRevokeService(r); return err },
		apply: (*txn).revokeService,
	},
	op[*rationv1.ReinstateServiceRequest, *rationv1.ReinstateServiceResponse]{
		action: ActReinstateService, owner: true, validate: validateReinstateService,
		check: func(x *txn, r *rationv1.ReinstateServiceRequest) error { _, err := x.service(r.GetName()); return err },
		apply: (*txn).reinstateService,
	},
	op[*rationv1.DeleteServiceRequest, *rationv1.DeleteServiceResponse]{
		action: ActDeleteService, owner: true, validate: validateDeleteService,
		check: func(x *txn, r *rationv1.DeleteServiceRequest) error { _, err := x.checkDeleteService(r); return err },
		apply: (*txn).deleteService,
	},
	op[*rationv1.RotateOwnerTokenRequest, *rationv1.RotateOwnerTokenResponse]{
		action: ActRotateOwnerToken, owner: true, issuesOwnerToken: true, validate: validateRotateOwnerToken,
		check: func(x *txn, r *rationv1.RotateOwnerTokenRequest) error {
			_, _, err := x.checkRotateOwnerToken(r)
			return err
		},
		apply: (*txn).rotateOwnerToken,
	},
	// Workers.
	op[*rationv1.RegisterRequest, *rationv1.RegisterResponse]{
		action: ActRegister, scope: byWorker, validate: validateRegister,
		check: func(x *txn, r *rationv1.RegisterRequest) error { _, _, _, err := x.checkRegister(r); return err },
		apply: (*txn).register,
	},
	op[*rationv1.UnregisterRequest, *rationv1.UnregisterResponse]{
		action: ActUnregister, scope: byWorker, validate: validateUnregister,
		check: func(x *txn, r *rationv1.UnregisterRequest) error { _, _, err := x.checkUnregister(r); return err },
		apply: (*txn).unregister,
	},
	op[*rationv1.DeactivateWorkerRequest, *rationv1.DeactivateWorkerResponse]{
		action: ActDeactivate, owner: true, validate: validateDeactivateWorker,
		check: func(x *txn, r *rationv1.DeactivateWorkerRequest) error { _, _, err := x.checkDeactivate(r); return err },
		apply: (*txn).deactivateWorker,
	},
	op[*rationv1.ReactivateWorkerRequest, *rationv1.ReactivateWorkerResponse]{
		action: ActReactivate, owner: true, validate: validateReactivateWorker,
		check: func(x *txn, r *rationv1.ReactivateWorkerRequest) error {
			_, _, err := x.registered(r.GetService(), r.GetWorkerId())
			return err
		},
		apply: (*txn).reactivateWorker,
	},
	op[*rationv1.RevertWorkerRequest, *rationv1.RevertWorkerResponse]{
		action: ActRevert, owner: true, validate: validateRevertWorker,
		check: func(x *txn, r *rationv1.RevertWorkerRequest) error { _, err := x.checkRevert(r); return err },
		apply: (*txn).revertWorker,
	},
	// Items and leases.
	op[*rationv1.AddItemsRequest, *rationv1.AddItemsResponse]{
		action: ActAddItems, owner: true, validate: validateAddItems, compact: compactAddItems,
		check: func(x *txn, r *rationv1.AddItemsRequest) error { _, err := x.checkAddItems(r); return err },
		apply: (*txn).addItems,
	},
	op[*rationv1.AcquireRequest, *rationv1.AcquireResponse]{
		action: ActAcquire, scope: byWorker, validate: validateAcquire,
		check: func(x *txn, r *rationv1.AcquireRequest) error { _, _, err := x.checkAcquire(r); return err },
		apply: (*txn).acquire,
	},
	// Heartbeats are never refused as a whole: each entry has its own answer.
	op[*statev1.HeartbeatBatch, *statev1.HeartbeatBatchResult]{
		action: ActHeartbeat, scope: byHeartbeatWorker, apply: infallible((*txn).heartbeat),
	},
	op[*rationv1.SubmitRequest, *rationv1.SubmitResponse]{
		action: ActSubmit, scope: byWorker, validate: validateSubmit, compact: compactSubmit,
		check: func(x *txn, r *rationv1.SubmitRequest) error { _, _, _, err := x.checkSubmit(r); return err },
		apply: (*txn).submit,
	},
	op[*rationv1.ReleaseRequest, *rationv1.ReleaseResponse]{
		action: ActRelease, scope: byWorker, validate: validateRelease,
		check: func(x *txn, r *rationv1.ReleaseRequest) error {
			_, err := x.holding(r.GetWorkerId(), r.GetBucketId(), r.GetEpoch())
			return err
		},
		apply: (*txn).release,
	},
	op[*rationv1.AckResultsRequest, *rationv1.AckResultsResponse]{
		action: ActAckResults, owner: true, validate: validateAckResults,
		check: func(x *txn, r *rationv1.AckResultsRequest) error { _, err := x.checkAckResults(r); return err },
		apply: (*txn).ackResults,
	},
	op[*rationv1.AddCanariesRequest, *rationv1.AddCanariesResponse]{
		action: ActAddCanaries, owner: true, validate: validateAddCanaries,
		check: func(x *txn, r *rationv1.AddCanariesRequest) error { _, err := x.checkAddCanaries(r); return err },
		apply: (*txn).addCanaries,
	},
	// Housekeeping the leader proposes: never refused as a whole.
	op[*statev1.Tick, *statev1.TickResult]{action: ActTick, scope: unscoped, apply: infallible((*txn).tick)},
	// Cluster metadata.
	op[*statev1.SetNode, *emptypb.Empty]{
		action: ActSetNode, scope: unscoped,
		check: func(_ *txn, r *statev1.SetNode) error { return checkSetNode(r) },
		apply: (*txn).setNode,
	},
	op[*statev1.RemoveNode, *emptypb.Empty]{
		action: ActRemoveNode, scope: unscoped, check: (*txn).checkRemoveNode, apply: (*txn).removeNode,
	},
	op[*statev1.SetClusterVersion, *emptypb.Empty]{
		action: ActSetClusterVersion, scope: unscoped,
		check: func(_ *txn, r *statev1.SetClusterVersion) error { return checkSetClusterVersion(r) },
		apply: (*txn).setClusterVersion,
	},
)

// operation is everything the state machine knows about one operation.
type operation struct {
	action string // its name in the activity log
	// owner: an owner token may send it (the other owner-role calls are
	// reads); the state machine checks the token against the service the
	// request names.
	owner bool
	// issuesOwnerToken: its answer carries the owner token hash the header
	// brought (CreateService, RotateOwnerToken).
	issuesOwnerToken bool
	scope            *scope
	// validate runs the checks that need no state; the API's edge runs
	// them (CheckRequest) before anything else.
	validate func(proto.Message) error
	// check runs the refusals that need state, before any change; Precheck
	// runs them on the leader before proposing. Nil: never refused whole.
	check func(*txn, proto.Message) error
	// apply checks and changes the state and returns the answer. A
	// refusal is a domain error, and then nothing but the activity log and
	// the rejected counters may have changed.
	apply   func(*txn, proto.Message) (proto.Message, error)
	compact *compactForm // nil: the operation always travels as it is

	field  protoreflect.FieldDescriptor // Command's field for it
	result protoreflect.FieldDescriptor // CommandResult's field for its answer; nil for none
}

// op describes an operation with its own request and response types;
// newOpTable turns it into an operation.
type op[Req, Res proto.Message] struct {
	action           string
	owner            bool
	issuesOwnerToken bool
	scope            *scope
	validate         func(Req) error
	check            func(*txn, Req) error
	apply            func(*txn, Req) (Res, error)
	compact          *compactForm
}

// infallible adapts the apply of an operation that is never refused.
func infallible[Req, Res any](apply func(*txn, Req) Res) func(*txn, Req) (Res, error) {
	return func(x *txn, r Req) (Res, error) { return apply(x, r), nil }
}

// describer is what newOpTable takes: an op of any request and response type.
type describer interface{ describe() *operation }

func (o op[Req, Res]) describe() *operation {
	var req Req
	var res Res
	d := &operation{action: o.action, owner: o.owner, issuesOwnerToken: o.issuesOwnerToken, scope: o.scope, compact: o.compact,
		field:  oneofField(commandOps, req.ProtoReflect().Descriptor()),
		result: oneofField(resultValues, res.ProtoReflect().Descriptor()),
		apply:  func(x *txn, m proto.Message) (proto.Message, error) { return o.apply(x, m.(Req)) },
	}
	if d.field == nil {
		panic(fmt.Sprintf("fsm: Command carries no %s", req.ProtoReflect().Descriptor().FullName()))
	}
	if _, empty := any(res).(*emptypb.Empty); d.result == nil && !empty {
		panic(fmt.Sprintf("fsm: CommandResult has no %s", res.ProtoReflect().Descriptor().FullName()))
	}
	if o.validate != nil {
		d.validate = func(m proto.Message) error { return o.validate(m.(Req)) }
	}
	if o.check != nil {
		d.check = func(x *txn, m proto.Message) error { return o.check(x, m.(Req)) }
	}
	return d
}

var (
	commandOps   = (&statev1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	resultValues = (&statev1.CommandResult{}).ProtoReflect().Descriptor().Oneofs().ByName("value")
)

// oneofField returns the field of a oneof that holds a message of type m.
func oneofField(o protoreflect.OneofDescriptor, m protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	for i := range o.Fields().Len() {
		if f := o.Fields().Get(i); f.Message() != nil && f.Message().FullName() == m.FullName() {
			return f
		}
	}
	return nil
}

// opTable finds operations by Command field and by request type.
type opTable struct {
	byField   map[protoreflect.FieldNumber]*operation // the plain and the compact forms' fields
	byRequest map[protoreflect.FullName]*operation
}

func newOpTable(ds ...describer) *opTable {
	t := &opTable{byField: map[protoreflect.FieldNumber]*operation{}, byRequest: map[protoreflect.FullName]*operation{}}
	for _, d := range ds {
		o := d.describe()
		t.byField[o.field.Number()] = o
		t.byRequest[o.field.Message().FullName()] = o
		if o.compact != nil {
			t.byField[o.compact.field.Number()] = o
		}
	}
	return t
}

// decode returns cmd's operation and its request as the command carries
// it, and whether that is the compact form; nil when cmd carries no known
// operation.
func (t *opTable) decode(cmd *statev1.Command) (o *operation, req proto.Message, compacted bool) {
	m := cmd.ProtoReflect()
	f := m.WhichOneof(commandOps)
	if f == nil {
		return nil, nil, false
	}
	if o = t.byField[f.Number()]; o == nil {
		return nil, nil, false
	}
	return o, m.Get(f).Message().Interface(), f.Number() != o.field.Number()
}

// of returns the operation whose plain request is req.
func (t *opTable) of(req proto.Message) (*operation, bool) {
	o, ok := t.byRequest[req.ProtoReflect().Descriptor().FullName()]
	return o, ok
}

// NewCommand returns a Command carrying req, an operation's request, with
// no header; ok is false when no operation takes req.
func NewCommand(req proto.Message) (cmd *statev1.Command, ok bool) {
	o, ok := operations.of(req)
	if !ok {
		return nil, false
	}
	cmd = &statev1.Command{}
	cmd.ProtoReflect().Set(o.field, protoreflect.ValueOfMessage(req.ProtoReflect()))
	return cmd, true
}

// Answer returns the operation's response a result carries, or nil when
// it carries an error or no response.
func Answer(res *statev1.CommandResult) proto.Message {
	m := res.ProtoReflect()
	f := m.WhichOneof(resultValues)
	if f == nil {
		return nil
	}
	return m.Get(f).Message().Interface()
}

// result wraps an operation's answer in a CommandResult.
func (o *operation) resultOf(x *txn, answer proto.Message) *statev1.CommandResult {
	res := &statev1.CommandResult{}
	if o.result != nil {
		res.ProtoReflect().Set(o.result, protoreflect.ValueOfMessage(answer.ProtoReflect()))
	}
	if o.issuesOwnerToken {
		res.OwnerTokenHash = x.hdr.GetNewOwnerTokenHash()
	}
	return res
}

// subject is what a command concerns: the service, worker and bucket its
// activity record and refusal counters are filed under.
type subject struct {
	service, worker string
	bucket          uint64
}

// subjectOf reads a request's subject from fields of fixed names: service
// (or, for a service's own operations, which have no service field, name),
// worker_id and bucket_id. A request without such a field names none.
func subjectOf(req proto.Message) subject {
	var s subject
	if r, ok := req.(interface{ GetService() string }); ok {
		s.service = r.GetService()
	} else if r, ok := req.(interface{ GetName() string }); ok {
		s.service = r.GetName()
	}
	if r, ok := req.(interface{ GetWorkerId() string }); ok {
		s.worker = r.GetWorkerId()
	}
	if r, ok := req.(interface{ GetBucketId() uint64 }); ok {
		s.bucket = r.GetBucketId()
	}
	return s
}

// scope is whose request ids an operation's id is kept among, so one client
// can never read another's answer by guessing its request id. prefix
// returns the key's prefix, or "" when the operation keeps no request id.
// A nil scope keeps ids per authenticated actor (the admin, an owner).
type scope struct {
	prefix func(req proto.Message) string
}

var (
	// byWorker keeps ids per worker id the request names.
	byWorker = &scope{func(req proto.Message) string { return "w/" + subjectOf(req).worker }}
	// unscoped keeps none: the leader's own commands are never retried by a client.
	unscoped = &scope{func(proto.Message) string { return "" }}
	// byHeartbeatWorker keeps ids per worker for a heartbeat of one worker;
	// a batch of several workers' heartbeats keeps none.
	byHeartbeatWorker = &scope{func(req proto.Message) string {
		es := req.(*statev1.HeartbeatBatch).GetEntries()
		if len(es) != 1 {
			return ""
		}
		return "w/" + es[0].GetRequest().GetWorkerId()
	}}
)

// requestKey is the key a command's request id and answer are kept under,
// or "" when it keeps none.
func (o *operation) requestKey(hdr *statev1.CommandHeader, req proto.Message) string {
	id := hdr.GetRequestId()
	if id == "" {
		return ""
	}
	prefix := "a/" + hdr.GetActor()
	if o.scope != nil {
		if prefix = o.scope.prefix(req); prefix == "" {
			return ""
		}
	}
	return prefix + "\x00" + id
}
