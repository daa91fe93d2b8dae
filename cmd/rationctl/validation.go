package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Validation from the command line: the policy's flags, canaries, and the
// cells that show what validation decided.

// validationFlags are the ValidationPolicy flags of service create and
// update.
type validationFlags struct {
	replicas, quorum, maxReplicas uint32
	adaptive                      bool
	spotCheck, trustAfter         uint32
	canaryRate, canaryFailures    uint32
	listTolerance                 uint32
	comparePayload                bool
}

func (f *validationFlags) register(fs *pflag.FlagSet) {
	fs.Uint32Var(&f.replicas, "replicas", 0, "validation: distinct workers that process each item before its result is judged (server default 1: every result is believed)")
	fs.Uint32Var(&f.quorum, "quorum", 0, "validation: agreeing results that make a result canonical (server default: a majority of --replicas)")
	fs.Uint32Var(&f.maxReplicas, "max-replicas", 0, "validation: results an item may collect before it is inconclusive (server default: replicas + 4)")
	fs.BoolVar(&f.adaptive, "adaptive", false, "validation: believe trusted workers without replication, but for a spot check (needs --replicas 2 or more)")
	fs.Uint32Var(&f.spotCheck, "spot-check", 0, "validation: with --adaptive, the least share of a trusted worker's buckets still replicated, in thousandths (server default 20)")
	fs.Uint32Var(&f.trustAfter, "trust-after", 0, "validation: agreeing results in a row before a worker is trusted (server default 10)")
	fs.Uint32Var(&f.canaryRate, "canary-rate", 0, "validation: canaries mixed into each leased bucket, per thousand items (0: none)")
	fs.Uint32Var(&f.canaryFailures, "canary-failures-to-deactivate", 0, "validation: wrong canary answers that deactivate a worker and revert its unvalidated results (0: never)")
	fs.Uint32Var(&f.listTolerance, "list-tolerance", 0, "validation: how far two id lists may differ and still agree, in thousandths (followers, following)")
	fs.BoolVar(&f.comparePayload, "compare-payload", false, "validation: results of a generic service agree only when their payloads are equal too")
}

// apply copies the validation flags given on the command line into cfg.
// A quorum or max_replicas that was the default for the old replicas is
// cleared when --replicas changes without it, so that the server derives
// it from the new replicas rather than keeping the old default.
func (f *validationFlags) apply(fs *pflag.FlagSet, cfg *rationv1.ServiceConfig) {
	names := []string{"replicas", "quorum", "max-replicas", "adaptive", "spot-check", "trust-after", "canary-rate",
		"canary-failures-to-deactivate", "list-tolerance", "compare-payload"}
	changed := false
	for _, n := range names {
		changed = changed || fs.Changed(n)
	}
	if !changed {
		return
	}
	if cfg.Validation == nil {
		cfg.Validation = &rationv1.ValidationPolicy{}
	}
	v := cfg.Validation
	set := fs.Changed
	if set("replicas") && f.replicas != v.GetReplicas() {
		// The server's defaults (fsm.validationFromProto).
		old := max(v.GetReplicas(), 1)
		oldMax := min(old+4, 20)
		if old == 1 {
			oldMax = 1
		}
		if !set("quorum") && v.GetQuorum() == old/2+1 {
			v.Quorum = 0
		}
		if !set("max-replicas") && v.GetMaxReplicas() == oldMax {
			v.MaxReplicas = 0
		}
		v.Replicas = f.replicas
	}
	if set("quorum") {
		v.Quorum = f.quorum
	}
	if set("max-replicas") {
		v.MaxReplicas = f.maxReplicas
	}
	if set("adaptive") {
		v.Adaptive = f.adaptive
	}
	if set("spot-check") {
		v.SpotCheck = f.spotCheck
	}
	if set("trust-after") {
		v.TrustAfter = f.trustAfter
	}
	if set("canary-rate") {
		v.CanaryRate = f.canaryRate
	}
	if set("canary-failures-to-deactivate") {
		v.CanaryFailuresToDeactivate = f.canaryFailures
	}
	if set("list-tolerance") {
		v.ListTolerance = f.listTolerance
	}
	if set("compare-payload") {
		v.ComparePayload = f.comparePayload
	}
}

func (a *app) canariesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "canaries", Short: "Give a service items with known answers, to test its workers (OwnerService)"}
	cmd.AddCommand(a.canariesAddCommand())
	return cmd
}

func (a *app) canariesAddCommand() *cobra.Command {
	var (
		file, reqID string
		chunk       int
	)
	cmd := &cobra.Command{
		Use:   "add SERVICE [ITEM=VERDICT[:PAYLOAD]...] [--file F]",
		Short: "Add canaries (or give stored ones a new answer), in chunks of --chunk per AddCanaries call",
		Long: `Add canaries: items with known answers, which leased buckets mix in at the
service's canary_rate, indistinguishable from other items. A wrong answer on
one ends a worker's trust; canary_failures_to_deactivate of them deactivate
it. A canary id must be no item's id; a canary already stored gets the new
answer.

Canaries come from the arguments, ITEM=VERDICT or ITEM=VERDICT:PAYLOAD (the
verdict ends at the first ':'), and from --file: JSON lines
{"item": ..., "verdict": ..., "payload": ...} ("-" for stdin; blank lines
are skipped), where a payload may be a JSON string or any JSON value, which
is sent as its text.

Each chunk is one AddCanaries call with its own request id, <prefix>-<n>, as
items add does.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if chunk <= 0 {
				return errors.New("--chunk: must be positive")
			}
			canaries, err := a.gatherCanaries(args[1:], file)
			if err != nil {
				return err
			}
			prefix := requestID(reqID)
			total := &rationv1.AddCanariesResponse{}
			calls, stopped, err := inChunks(len(canaries), chunk, prefix, func(lo, hi int, id string) error {
				resp, err := a.api.AddCanaries(cmd.Context(), &rationv1.AddCanariesRequest{
					Service: args[0], Canaries: canaries[lo:hi], RequestId: id,
				})
				if err != nil {
					return err
				}
				total.Added += resp.GetAdded()
				total.Updated += resp.GetUpdated()
				total.Total = resp.GetTotal()
				return nil
			})
			if err != nil {
				if stopped > 1 {
					fmt.Fprintf(a.stderr, "rationctl: canaries add stopped at chunk %d of %d (added %d, updated %d before it); "+
						"run again with --request-id %s to resume without repeating them\n", stopped, calls, total.Added, total.Updated, prefix)
				}
				return err
			}
			return a.print(total, func(w io.Writer) {
				row(w, "ADDED", "UPDATED", "TOTAL", "CALLS")
				row(w, total.Added, total.Updated, total.Total, calls)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", `read canaries from this file, JSON lines of {"item","verdict","payload"} ("-" for stdin)`)
	f.IntVar(&chunk, "chunk", 1000, "canaries per AddCanaries call (at most 1000)")
	f.StringVar(&reqID, "request-id", "", "request id prefix; chunk n is sent as <prefix>-<n> (default random)")
	return cmd
}

// gatherCanaries reads the canaries of canaries add from its arguments
// and --file, and refuses none, or one given twice.
func (a *app) gatherCanaries(args []string, file string) ([]*rationv1.Canary, error) {
	var canaries []*rationv1.Canary
	for _, arg := range args {
		c, err := parseCanary(arg)
		if err != nil {
			return nil, err
		}
		canaries = append(canaries, c)
	}
	if file != "" {
		more, err := a.readCanaries(file)
		if err != nil {
			return nil, err
		}
		canaries = append(canaries, more...)
	}
	if len(canaries) == 0 {
		return nil, errors.New("canaries add: no canaries given")
	}
	seen := make(map[string]bool, len(canaries))
	for _, c := range canaries {
		if seen[c.GetItem()] {
			return nil, fmt.Errorf("canaries add: canary %q is given twice", c.GetItem())
		}
		seen[c.GetItem()] = true
	}
	return canaries, nil
}

// parseCanary parses ITEM=VERDICT[:PAYLOAD].
func parseCanary(s string) (*rationv1.Canary, error) {
	item, answer, ok := strings.Cut(s, "=")
	if !ok || item == "" || answer == "" {
		return nil, fmt.Errorf("canary %q: want ITEM=VERDICT or ITEM=VERDICT:PAYLOAD", s)
	}
	verdict, payload, _ := strings.Cut(answer, ":")
	if verdict == "" {
		return nil, fmt.Errorf("canary %q: the verdict is empty", s)
	}
	return &rationv1.Canary{Item: item, Verdict: verdict, Payload: payload}, nil
}

// readCanaries reads JSON lines of canaries from path ("-": stdin).
func (a *app) readCanaries(path string) ([]*rationv1.Canary, error) {
	r, closeFn, err := a.open(path)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	var out []*rationv1.Canary
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var in struct {
			Item    string          `json:"item"`
			Verdict string          `json:"verdict"`
			Payload json.RawMessage `json:"payload"`
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if in.Item == "" || in.Verdict == "" {
			return nil, fmt.Errorf("%s line %d: a canary needs an item and a verdict", path, n)
		}
		out = append(out, &rationv1.Canary{Item: in.Item, Verdict: in.Verdict, Payload: payloadText(in.Payload)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// payloadText is a payload given in JSON: a string as it is, any other
// value as its JSON text.
func payloadText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return string(raw)
	}
	return s
}

// validating reports whether a service config has a validation policy.
func validating(c *rationv1.ServiceConfig) bool { return c.GetValidation() != nil }

func validationRow(w io.Writer, v *rationv1.ValidationPolicy) {
	row(w, "validation", fmt.Sprintf("replicas=%d quorum=%d max_replicas=%d adaptive=%t spot_check=%d trust_after=%d "+
		"canary_rate=%d canary_failures_to_deactivate=%d list_tolerance=%d compare_payload=%t",
		v.GetReplicas(), v.GetQuorum(), v.GetMaxReplicas(), v.GetAdaptive(), v.GetSpotCheck(), v.GetTrustAfter(),
		v.GetCanaryRate(), v.GetCanaryFailuresToDeactivate(), v.GetListTolerance(), v.GetComparePayload()))
}

// validationCounterRow shows what validation decided for a service.
func validationCounterRow(w io.Writer, it *rationv1.ItemCounts, c *rationv1.Counters) {
	row(w, "validation_counts", fmt.Sprintf("canonical=%d unvalidated=%d disagreed=%d awaiting_quorum=%d inconclusive=%d "+
		"canaries_passed=%d canaries_failed=%d overhead=%s",
		c.GetResultsValidated(), c.GetResultsUnvalidated(), c.GetResultsDisagreed(), it.GetAwaitingQuorum(), it.GetInconclusive(),
		c.GetCanariesPassed(), c.GetCanariesFailed(), fmtOverhead(c)))
}

// fmtOverhead is what replication costs: the results workers sent per
// result the service settled (canonical or believed), less one, as a
// percentage; "-" before anything is settled. Results still awaiting a
// quorum and those of inconclusive items count in the cost.
func fmtOverhead(c *rationv1.Counters) string {
	settled := c.GetResultsValidated() + c.GetResultsUnvalidated()
	if settled == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", (float64(c.GetResultsAccepted())/float64(settled)-1)*100)
}

// validationCells are the validation columns of a service table row.
func validationCells(s *rationv1.ServiceInfo) []any {
	if !validating(s.GetConfig()) {
		return []any{"-", "-", "-", "-", "-"}
	}
	it, c := s.GetItems(), s.GetCounters()
	return []any{it.GetAwaitingQuorum(), it.GetInconclusive(), c.GetResultsValidated(), c.GetResultsUnvalidated(), c.GetCanariesFailed()}
}

var validationHeads = []any{"AWAITING-QUORUM", "INCONCLUSIVE", "CANONICAL", "UNVALIDATED", "CANARIES-FAILED"}

// trustCells are the trust columns of a worker table row.
func trustCells(wk *rationv1.WorkerInfo) []any {
	t := wk.GetTrust()
	if t == nil {
		return []any{"-", "-", "-", "-", "-"}
	}
	trusted := "no"
	if t.GetTrusted() {
		trusted = "yes"
	}
	c := wk.GetCounters()
	return []any{t.GetRun(), trusted, fmt.Sprintf("%.1f%%", float64(t.GetReplicateChance())/10),
		c.GetResultsDisagreed(), c.GetCanariesFailed()}
}

var trustHeads = []any{"TRUST-RUN", "TRUSTED", "REPLICATED", "DISAGREED", "CANARIES-FAILED"}

// fmtVotes shows an item's votes as WORKER=VERDICT, marked ✓ or ✗ by
// whether it agreed with the canonical result once there is one.
func fmtVotes(it *rationv1.ItemInfo) string {
	votes := it.GetVotes()
	if len(votes) == 0 {
		return "-"
	}
	canonical := it.GetResult().GetValidated()
	parts := make([]string, len(votes))
	for i, v := range votes {
		parts[i] = v.GetWorkerId() + "=" + v.GetVerdict()
		switch {
		case !canonical:
		case v.GetAgreed():
			parts[i] += "✓"
		default:
			parts[i] += "✗"
		}
	}
	return strings.Join(parts, " ")
}

// fmtValidated says whether an item's result was validated by a quorum.
func fmtValidated(it *rationv1.ItemInfo) string {
	switch {
	case it.GetResult() == nil:
		return "-"
	case it.GetResult().GetValidated():
		return "yes"
	}
	return "no"
}
