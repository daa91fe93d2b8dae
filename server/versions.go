package server

import (
	peerv1 "github.com/rationhq/ration/api/ration/peer/v1"
	"github.com/rationhq/ration/cluster"
)

// Members' builds ride on the read-index calls, as clock offsets do
// (cluster/versions.go): the caller names its build, and the leader answers
// with every member's it has heard lately.

func buildProto(v cluster.MemberVersion) *peerv1.BuildVersion {
	return &peerv1.BuildVersion{Release: v.Release, Commit: v.Commit, MinProtocol: v.MinProtocol, MaxProtocol: v.MaxProtocol}
}

func buildOf(p *peerv1.BuildVersion) cluster.MemberVersion {
	if p == nil || p.GetMaxProtocol() == 0 {
		return cluster.Legacy() // a build before versions were published
	}
	return cluster.MemberVersion{Release: p.GetRelease(), Commit: p.GetCommit(), MinProtocol: p.GetMinProtocol(), MaxProtocol: p.GetMaxProtocol()}
}

// stampVersion names this node's build in a read-index request.
func (s *Server) stampVersion(req *peerv1.ReadIndexRequest) {
	req.Version = buildProto(s.store.OwnVersion())
}

// answerVersions, on the leader, notes the caller's build and answers with
// every member's it knew when the membership was read.
func (s *Server) answerVersions(req *peerv1.ReadIndexRequest, res *peerv1.ReadIndexResponse, members []cluster.Member) {
	if id := req.GetNodeId(); id != "" {
		s.store.ObserveMemberVersion(id, buildOf(req.GetVersion()))
	}
	for _, m := range members {
		if m.Known {
			res.Members = append(res.Members, &peerv1.MemberVersion{NodeId: m.ID, Version: buildProto(m.Version)})
		}
	}
}

// learnVersions takes the members' builds from the leader's answer.
func (s *Server) learnVersions(res *peerv1.ReadIndexResponse) {
	for _, m := range res.GetMembers() {
		s.store.ObserveMemberVersion(m.GetNodeId(), buildOf(m.GetVersion()))
	}
}
