package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestServer_ValidationOverJSON runs validation through the JSON API as a
// client in any language sees it: a service with replicas 2 and a canary
// in every lease, two workers on one bucket. The leases show the canary as
// one more item; ListItems shows the votes and the validated result,
// ListWorkers the trust, GetStats the items awaiting a quorum; AddCanaries
// refusals name what is wrong.
func TestServer_ValidationOverJSON(t *testing.T) {
	const token = "validation-admin-token"
	c := newNode(t, token)
	base := "http://" + c.addrs[0]
	// call posts body and returns the status and the decoded answer.
	call := func(path, auth, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, raw)
		}
		return resp.StatusCode, out
	}
	post := func(path, auth, body string) map[string]any {
		t.Helper()
		code, out := call(path, auth, body)
		if code != 200 {
			t.Fatalf("%s: %d %v", path, code, out)
		}
		return out
	}
	obj := func(v any) map[string]any { return v.(map[string]any) }
	list := func(v any) []any { l, _ := v.([]any); return l }

	created := post("/ration.v1.OwnerService/CreateService", token,
		`{"name":"v","kind":"dmcheck","config":{"bucket_size":2,"validation":{"replicas":2,"canary_rate":500}}}`)
	if v := obj(obj(created["config"])["validation"]); v["replicas"] != 2.0 || v["quorum"] != 2.0 || v["maxReplicas"] != 6.0 {
		t.Fatalf("the policy with its defaults: %v", v)
	}
	post("/ration.v1.OwnerService/AddItems", token, `{"service":"v","items":["1","2"]}`)
	added := post("/ration.v1.OwnerService/AddCanaries", token, `{"service":"v","canaries":[{"item":"c-1","verdict":"DM"}]}`)
	if added["added"] != 1.0 || added["updated"] != 0.0 || added["total"] != 1.0 {
		t.Fatalf("AddCanaries: %v", added)
	}

	// Refusals: invalid_argument, saying what is wrong.
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprintf(`{"item":"k%d","verdict":"DM"}`, i)
	}
	for _, tc := range []struct{ body, says string }{
		{`{"service":"v","canaries":[{"item":"1","verdict":"DM"}]}`, `canaries[0]: "1" is an item of service "v"; a canary needs an id of its own`},
		{`{"service":"v","canaries":[{"item":"c-2","verdict":"MAYBE"}]}`, `canaries[0] (item "c-2"): verdict not allowed: "MAYBE" (want one of [DM NON_DM UNKNOWN])`},
		{`{"service":"v","canaries":[` + strings.Join(many, ",") + `]}`, "canaries has 1001 entries, want 1 to 1000"},
	} {
		code, out := call("/ration.v1.OwnerService/AddCanaries", token, tc.body)
		if code != http.StatusBadRequest || out["code"] != "invalid_argument" || !strings.Contains(fmt.Sprint(out["message"]), tc.says) {
			t.Errorf("AddCanaries %.60s...: %d %v; want invalid_argument saying %q", tc.body, code, out, tc.says)
		}
	}
	if total := post("/ration.v1.OwnerService/AddCanaries", token, `{"service":"v","canaries":[{"item":"c-1","verdict":"DM"}]}`)["total"]; total != 1.0 {
		t.Fatalf("a refused AddCanaries stored canaries: total %v", total)
	}

	stats := func() map[string]any {
		t.Helper()
		return obj(post("/ration.v1.InsightService/GetStats", token, `{"service":"v"}`)["items"])
	}
	items := func() map[string]map[string]any {
		t.Helper()
		out := map[string]map[string]any{}
		for _, it := range list(post("/ration.v1.OwnerService/ListItems", token, `{"service":"v"}`)["items"]) {
			out[obj(it)["id"].(string)] = obj(it)
		}
		return out
	}
	// process has a worker lease the bucket and answer DM throughout.
	process := func(worker string) {
		t.Helper()
		secret := workerSecret + "-" + worker
		post("/ration.v1.WorkerService/Register", secret, fmt.Sprintf(`{"service":"v","worker_id":%q}`, worker))
		acq := post("/ration.v1.WorkerService/Acquire", secret, fmt.Sprintf(`{"service":"v","worker_id":%q}`, worker))
		mine := post("/ration.v1.WorkerService/ListMyBuckets", secret, fmt.Sprintf(`{"service":"v","worker_id":%q}`, worker))
		for name, answer := range map[string]map[string]any{"Acquire": acq, "ListMyBuckets": mine} {
			bs := list(answer["buckets"])
			if len(bs) != 1 {
				t.Fatalf("%s for %s: %v", name, worker, answer)
			}
			b := obj(bs[0])
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range b {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, []string{"id", "items", "lease", "service", "state"}) {
				t.Errorf("%s: a leased bucket has the fields %v", name, keys)
			}
			var ids []string
			for _, it := range list(b["items"]) {
				ids = append(ids, it.(string))
			}
			slices.Sort(ids)
			if !slices.Equal(ids, []string{"1", "2", "c-1"}) {
				t.Errorf("%s for %s: items %v, want the two items and the canary, all alike", name, worker, b["items"])
			}
		}
		b := obj(list(acq["buckets"])[0])
		var res []string
		for _, it := range list(b["items"]) {
			res = append(res, fmt.Sprintf(`{"item":%q,"verdict":"DM"}`, it))
		}
		sub := post("/ration.v1.WorkerService/Submit", secret, fmt.Sprintf(`{"worker_id":%q,"bucket_id":%q,"epoch":%q,"results":[%s]}`,
			worker, b["id"], obj(b["lease"])["epoch"], strings.Join(res, ",")))
		if sub["accepted"] != 3.0 || sub["requeued"] != 0.0 {
			t.Fatalf("%s submits: %v (the canary's answer counts as accepted, as any other)", worker, sub)
		}
	}

	process("w1")
	if st := stats(); st["awaitingQuorum"] != "2" || st["pending"] != "2" || st["done"] != "0" {
		t.Fatalf("GetStats after one vote: %v", st)
	}
	for id, it := range items() {
		votes := list(it["votes"])
		if it["state"] != "ITEM_STATE_PENDING" || it["result"] != nil || len(votes) != 1 ||
			obj(votes[0])["workerId"] != "w1" || obj(votes[0])["verdict"] != "DM" || obj(votes[0])["agreed"] != false {
			t.Errorf("ListItems after one vote, item %s: %v", id, it)
		}
	}

	process("w2")
	if st := stats(); st["awaitingQuorum"] != "0" || st["done"] != "2" || st["inconclusive"] != "0" {
		t.Fatalf("GetStats after two votes: %v", st)
	}
	got := items()
	if len(got) != 2 {
		t.Fatalf("ListItems lists %d items, want 2 (canaries are no items): %v", len(got), got)
	}
	for id, it := range got {
		votes := list(it["votes"])
		var who []string
		for _, v := range votes {
			if obj(v)["verdict"] != "DM" || obj(v)["agreed"] != true {
				t.Errorf("item %s: vote %v", id, v)
			}
			who = append(who, obj(v)["workerId"].(string))
		}
		res, _ := it["result"].(map[string]any)
		if it["state"] != "ITEM_STATE_DONE" || res == nil || res["validated"] != true || res["verdict"] != "DM" || !slices.Equal(who, []string{"w1", "w2"}) {
			t.Errorf("ListItems after two votes, item %s: %v", id, it)
		}
	}
	svc := obj(post("/ration.v1.OwnerService/GetService", token, `{"name":"v"}`)["service"])
	if cn := obj(svc["counters"]); cn["resultsValidated"] != "2" || cn["resultsAccepted"] != "4" || cn["canariesPassed"] != "2" || cn["canariesFailed"] != "0" {
		t.Errorf("counters: %v", cn)
	}
	for _, w := range list(post("/ration.v1.InsightService/ListWorkers", token, `{"service":"v"}`)["workers"]) {
		// One canary and two items agreed: a run of 3.
		tr, _ := obj(w)["trust"].(map[string]any)
		if tr == nil || tr["run"] != "3" || tr["trusted"] != false || tr["replicateChance"] != 1000.0 ||
			!strings.Contains(fmt.Sprint(tr["why"]), "validation is not adaptive") {
			t.Errorf("ListWorkers: %s's trust %v", obj(w)["workerId"], tr)
		}
	}
}
