package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/paystream/paystream/internal/config"
)

// scalingFigures is how the pipeline's costs move with the partition
// count at a fixed total rate, with the discard sink: one steady run (no
// kill) per rate and partition count, and catch-up at each count.
type scalingFigures struct {
	Steady  []steadyState `json:"steady"`   // rate-major, in --scaling-rates and --scaling-partitions order
	CatchUp []catchUp     `json:"catch_up"` // one per partition count
}

// scalingRuns measures the scaling curve.
func (e *env) scalingRuns(ctx context.Context, o options, rep *report) error {
	var f scalingFigures
	for _, rate := range o.ScalingRates {
		for _, p := range o.ScalingPartitions {
			e.logf("scaling, discard sink: %d events/s on %d partitions for %s", rate, p, o.ScalingFor)
			st, err := e.steadyOrError(ctx, steadySpec{sink: config.SinkDiscard, writeMode: config.WriteModeLoad, partitions: p, rate: float64(rate), length: o.ScalingFor, noKill: true})
			if err != nil {
				return err
			}
			if c := st.Cost; c != nil {
				e.logf("  latency p50 %.2f s, p99 %.2f s; %.0f actions/s, server %.2f cores, worker %.2f cores", st.LatencyP50, st.LatencyP99, c.ActionsPerS, c.ServerCores, st.Cores["worker"])
			}
			f.Steady = append(f.Steady, st)
		}
	}
	for _, p := range o.ScalingPartitions {
		e.logf("scaling, catch-up: %d events on %d partitions, batches of %d, discard sink", o.Events, p, headlineBatchSize(o))
		r, _, err := e.temporalRun(ctx, config.SinkDiscard, config.WriteModeLoad, p, headlineBatchSize(o), o.Events, nil)
		if err != nil {
			return fmt.Errorf("scaling catch-up on %d partitions: %w", p, err)
		}
		e.logf("  %.0f events/s, reconciled %v", r.EventsPerS, r.Reconciled)
		f.CatchUp = append(f.CatchUp, r)
	}
	rep.Scaling = &f
	return nil
}

// scalingMarkdown is the report's table of the scaling curve.
func (r *report) scalingMarkdown() string {
	f := r.Scaling
	if f == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Scaling with partitions\n\n")
	fmt.Fprintf(&b, "The discard sink at a fixed total rate, %s a run, no kill, one worker; latency from produce time to the batch's ledger row being visible. Cores are of the run's length; actions are billed actions (see Temporal cost) including the worker's heartbeats. Catch-up: %d events in batches of %d.\n\n",
		r.Options.ScalingFor, r.Options.Events, headlineBatchSize(r.Options))
	b.WriteString("| events/s | partitions | p50 / p99 latency | worker cores | Temporal server cores | actions/s | actions a batch | history KB/s | reconciled |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range f.Steady {
		c := st.Cost
		if c == nil {
			fmt.Fprintf(&b, "| %.0f | %d | did not finish: %s ||||||\n", st.Rate, st.Partitions, st.Error)
			continue
		}
		fmt.Fprintf(&b, "| %.0f | %d | %.2f / %.2f s%s | %.2f | %.2f | %.0f | %.2f | %.0f | %v |\n",
			st.Rate, st.Partitions, st.LatencyP50, st.LatencyP99, behind(st), st.Cores["worker"], c.ServerCores, c.ActionsPerS, c.ActionsPerBatch, c.HistoryBytesPerS/1000, st.Reconciled)
	}
	b.WriteString("\n| partitions | catch-up events/s | reconciled |\n|---|---|---|\n")
	for _, c := range f.CatchUp {
		fmt.Fprintf(&b, "| %d | %.0f | %v |\n", c.Partitions, c.EventsPerS, c.Reconciled)
	}
	return b.String()
}

// scalingSVG draws the curve under the report's other charts: p99 latency
// and Temporal actions a second by partition count, a line per rate.
func (r *report) scalingSVG(b *strings.Builder, top, w, h int) {
	f := r.Scaling
	parts := r.Options.ScalingPartitions
	if f == nil || len(parts) == 0 {
		return
	}
	colors := []string{"#4e79a7", "#e15759", "#76b7b2", "#edc948"}
	panel := func(x0 float64, title string, value func(steadyState) float64) {
		const pad = 50.0
		chartW, chartH := float64(w)/2-2*pad, float64(h)-2*pad
		maxV := 0.0
		for _, st := range f.Steady {
			maxV = max(maxV, value(st))
		}
		if maxV == 0 {
			maxV = 1
		}
		y0 := float64(top) + float64(h) - pad
		fmt.Fprintf(b, `<text x="%.0f" y="%d" font-size="14">%s</text>`+"\n", x0, top+20, title)
		fmt.Fprintf(b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, y0, x0+chartW, y0)
		step := chartW / float64(max(len(parts)-1, 1))
		for i, p := range parts {
			fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", x0+float64(i)*step, y0+16, p)
		}
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="end">partitions</text>`+"\n", x0+chartW, y0+32)
		for ri, rate := range r.Options.ScalingRates {
			var pts []string
			for i := range parts {
				k := ri*len(parts) + i
				if k >= len(f.Steady) || f.Steady[k].Cost == nil {
					continue
				}
				v := value(f.Steady[k])
				x, y := x0+float64(i)*step, y0-v/maxV*chartH
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
				fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s">%.3g</text>`+"\n", x, y-5, colors[ri%len(colors)], v)
			}
			fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), colors[ri%len(colors)])
			fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%d events/s</text>`+"\n", x0+float64(ri)*120, y0+38, colors[ri%len(colors)], x0+14+float64(ri)*120, y0+47, rate)
		}
	}
	panel(50, "p99 latency (s) by partitions, discard sink", func(st steadyState) float64 { return st.LatencyP99 })
	panel(float64(w)/2+50, "Temporal billed actions/s by partitions", func(st steadyState) float64 {
		if st.Cost == nil {
			return 0
		}
		return st.Cost.ActionsPerS
	})
}
