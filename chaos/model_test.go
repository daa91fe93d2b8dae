package chaos

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The lease model, per bucket. A grant raises the epoch and names the
// holder; a submit by the holder at the current epoch closes the bucket for
// good; a release by the holder at the current epoch frees it. Expiry and
// dead release happen without a client operation, so the model lets a new
// grant replace any lease with a higher epoch, and accepts any refusal.
//
// A bucket of the validated service (replicas 2, honest workers) is closed
// by two votes instead: the first submit frees it, barred to its voter (no
// grant may go to a worker who has voted on it); the second, by another
// worker, closes it for good. That second vote always closes it: the votes
// agree, and a bucket holding a vote takes no new items (requeued items go
// to open buckets), so every item the second voter answers already holds
// the first vote and becomes canonical.
type bucketState struct {
	epoch  uint64
	holder string
	status string // free, leased, done
	voters string // the workers who have voted on it, comma-separated
}

type modelInput struct {
	kind   string // grant, submit, release
	worker string
	epoch  uint64
	// validated: the bucket is the validated service's.
	validated bool
}

// hasVoted reports whether worker has voted on a bucket in state s.
func (s bucketState) hasVoted(worker string) bool {
	return s.voters != "" && slices.Contains(strings.Split(s.voters, ","), worker)
}

// voted is s after the holder's vote (a submit on the validated service):
// free and barred to the voter after the first, done after the second.
func (s bucketState) voted() bucketState {
	if s.voters == "" {
		return bucketState{epoch: s.epoch, status: "free", voters: s.holder}
	}
	return bucketState{epoch: s.epoch, holder: s.holder, status: "done", voters: s.voters + "," + s.holder}
}

var leaseModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byBucket := map[uint64][]porcupine.Operation{}
		var keys []uint64
		for _, o := range history {
			b := o.Metadata.(uint64)
			if _, ok := byBucket[b]; !ok {
				keys = append(keys, b)
			}
			byBucket[b] = append(byBucket[b], o)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byBucket[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{bucketState{status: "free"}} },
	Step: func(state, input, output interface{}) []interface{} {
		s, in, out := state.(bucketState), input.(modelInput), output.(string)
		switch in.kind {
		case "grant":
			if s.status == "done" || in.epoch <= s.epoch || s.hasVoted(in.worker) {
				return nil
			}
			return []interface{}{bucketState{epoch: in.epoch, holder: in.worker, status: "leased", voters: s.voters}}
		case "submit", "release":
			next := bucketState{epoch: s.epoch, holder: s.holder, status: "done"}
			switch {
			case in.kind == "release":
				next = bucketState{epoch: s.epoch, status: "free", voters: s.voters}
			case in.validated:
				next = s.voted()
			}
			valid := s.status == "leased" && s.epoch == in.epoch && s.holder == in.worker
			switch {
			case out == outOK && valid:
				return []interface{}{next}
			case out == outOK:
				return nil
			case out == outUnknown && valid:
				return []interface{}{s, next}
			default:
				return []interface{}{s} // refused: nothing changed
			}
		}
		return nil
	},
	Equal: func(a, b interface{}) bool { return a.(bucketState) == b.(bucketState) },
	DescribeOperation: func(input, output interface{}) string {
		in := input.(modelInput)
		vote := ""
		if in.validated && in.kind == "submit" {
			vote = " (vote)"
		}
		return fmt.Sprintf("%s(%s, epoch %d)%s -> %v", in.kind, in.worker, in.epoch, vote, output)
	},
	DescribeState: func(state interface{}) string {
		s := state.(bucketState)
		voters := ""
		if s.voters != "" {
			voters = fmt.Sprintf(" voters %s", s.voters)
		}
		return fmt.Sprintf("%s epoch %d holder %q%s", s.status, s.epoch, s.holder, voters)
	},
}

// modelOps turns the history into porcupine operations, one per bucket
// touched: a grant for each bucket an acquire returned, and each submit and
// release (a vote on the validated service's). An operation whose outcome
// is unknown may have taken effect at any time after its call: it returns
// after everything else.
func modelOps(ops []op) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Return)
	}
	var out []porcupine.Operation
	for _, o := range ops {
		ret := o.Return
		res := o.Outcome
		if res == outUnknown {
			ret = end + 1
		} else if res != outOK {
			res = "refused"
		}
		validated := o.Service == validatedService
		switch o.Kind {
		case "acquire":
			for _, g := range o.Grants {
				out = append(out, porcupine.Operation{ClientId: o.Client, Input: modelInput{"grant", o.Worker, g.Epoch, validated},
					Call: o.Call, Output: outOK, Return: o.Return, Metadata: g.Bucket})
			}
		case "submit", "release":
			out = append(out, porcupine.Operation{ClientId: o.Client, Input: modelInput{o.Kind, o.Worker, o.Epoch, validated},
				Call: o.Call, Output: res, Return: min(ret, math.MaxInt64), Metadata: o.Bucket})
		}
	}
	return out
}

// checkEpochs finds grants that share an epoch: no two grants may.
func checkEpochs(ops []op) []string {
	seen := map[uint64]string{}
	var bad []string
	for _, o := range ops {
		for _, g := range o.Grants {
			who := fmt.Sprintf("bucket %d to %s", g.Bucket, o.Worker)
			if prev, dup := seen[g.Epoch]; dup && prev != who {
				bad = append(bad, fmt.Sprintf("epoch %d granted twice: %s and %s", g.Epoch, prev, who))
			}
			seen[g.Epoch] = who
		}
	}
	return bad
}

func summarize(lines []string, max int) string {
	if len(lines) > max {
		lines = append(lines[:max:max], fmt.Sprintf("... and %d more", len(lines)-max))
	}
	return strings.Join(lines, "\n")
}
