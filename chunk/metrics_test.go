package chunk

// gaugeValue reads one metric's value from a server's registry (0 if absent).
func gaugeValue(s *Server, name string) float64 {
	mfs, err := s.cfg.Gatherer.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Counter != nil:
				v += m.Counter.GetValue()
			}
		}
		return v
	}
	return 0
}
