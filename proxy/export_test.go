package proxy

// runtimeUsers counts the sessions that have not given their runtime back
// (not logged out), over all runtimes.
func (s *Server) runtimeUsers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.rtUsers {
		n += c
	}
	return n
}
