package server

// RateKeys is how many keys s's rate limiters track, all together.
func RateKeys(s *Server) int {
	n := 0
	for _, kl := range append(s.limits.byWorker[:], s.limits.byAddr[:]...) {
		if kl != nil {
			n += kl.len()
		}
	}
	return n
}

// OpenStreams is how many server streams s counts as open.
func OpenStreams(s *Server) int {
	s.limits.streamMu.Lock()
	defer s.limits.streamMu.Unlock()
	n := 0
	for _, c := range s.limits.streams {
		n += c
	}
	return n
}
