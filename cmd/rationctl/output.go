package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// jsonOptions print messages with the proto field names (snake_case), the
// names README's curl examples send, zero values written out as the API
// writes them.
var jsonOptions = protojson.MarshalOptions{Multiline: true, UseProtoNames: true, EmitDefaultValues: true}

// print writes msg as JSON with -o json, else calls table with a tabwriter
// that is flushed afterwards.
func (a *app) print(msg proto.Message, table func(w io.Writer)) error {
	if a.output == "json" {
		b, err := jsonOptions.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	tw := newTable(a.stdout)
	table(tw)
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// row writes one tab-separated table row.
func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

// jsonLine writes msg as one compact JSON object on one line, with extra
// fields merged in (used for streams, which print JSON lines).
func jsonLine(w io.Writer, msg proto.Message, extra map[string]any) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(msg)
	if err != nil {
		return err
	}
	if len(extra) > 0 {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for k, v := range extra {
			m[k] = v
		}
		if b, err = json.Marshal(m); err != nil {
			return err
		}
	} else {
		// protojson varies its whitespace on purpose; compact it so every
		// line looks the same.
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		b = buf.Bytes()
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printError writes err to w as "rationctl: <code>: <message>", adding the
// machine-readable reason and the answering node from ration's ErrorDetail.
func printError(w io.Writer, err error) {
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		fmt.Fprintf(w, "rationctl: %v\n", err)
		return
	}
	var extra []string
	if ed := client.Detail(err); ed != nil {
		if ed.GetReason() != "" {
			extra = append(extra, "reason="+ed.GetReason())
		}
		if ed.GetServedBy() != "" {
			extra = append(extra, "served-by="+ed.GetServedBy())
		}
	}
	msg := ce.Message()
	if msg == "" {
		msg = ce.Code().String()
	}
	if len(extra) > 0 {
		msg += " (" + strings.Join(extra, " ") + ")"
	}
	fmt.Fprintf(w, "rationctl: %s: %s\n", ce.Code(), msg)
	if hint := credentialHint(client.Reason(err)); hint != "" {
		fmt.Fprintf(w, "rationctl: %s\n", hint)
	}
}

// credentialHint says how to give rationctl the credential a refusal is
// about: the server's message names the HTTP header, not the flags.
func credentialHint(reason string) string {
	switch reason {
	case "NO_CREDENTIAL", "BAD_CREDENTIAL", "WRONG_ROLE":
		return "worker commands take --worker-secret (or RATION_WORKER_SECRET); the others --token (or RATION_TOKEN, RATION_ADMIN_TOKEN): the admin token or the service's owner token"
	}
	return ""
}

// Cell formatting.

func fmtTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format(time.RFC3339)
}

func fmtDur(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().String()
}

func fmtStr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtID(id uint64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(id, 10)
}

// enumName turns SERVICE_STATE_ACTIVE into "active".
func enumName(s fmt.Stringer, prefix string) string {
	n := strings.TrimPrefix(s.String(), prefix)
	if n == "UNSPECIFIED" {
		return "-"
	}
	return strings.ToLower(n)
}

// parseEnum maps a lower-case flag value (pending) to an enum number through
// the generated name table (ITEM_STATE_PENDING).
func parseEnum(flag, value, prefix string, names map[string]int32) (int32, error) {
	if value == "" {
		return 0, nil
	}
	n, ok := names[prefix+strings.ToUpper(strings.ReplaceAll(value, "-", "_"))]
	if !ok || n == 0 {
		var valid []string
		for name, num := range names {
			if num != 0 {
				valid = append(valid, strings.ToLower(strings.TrimPrefix(name, prefix)))
			}
		}
		slices.Sort(valid)
		return 0, fmt.Errorf("--%s: %q is not one of %s", flag, value, strings.Join(valid, ", "))
	}
	return n, nil
}

func fmtVerdicts(vs []*rationv1.VerdictCount) string {
	if len(vs) == 0 {
		return "-"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%s=%d", v.GetVerdict(), v.GetCount())
	}
	return strings.Join(parts, " ")
}
