// Package statev1 holds ration's internal formats, generated from the
// .proto files beside it: the commands of the Raft log (command.proto,
// compact.proto) and the records of a snapshot (snapshot.proto). They are
// not part of the API, which is ration/v1. Nodes read logs and snapshots
// that earlier builds wrote, so field numbers and types never change.
package statev1
