package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	rationv1 "github.com/rationhq/ration/api/ration/v1"
	"github.com/rationhq/ration/internal/version"
)

func (a *app) versionCommand() *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print this build's release, commit, log protocols and snapshot formats, and the cluster's version and members' releases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			own := version.Get()
			if local {
				return a.printVersion(own, nil)
			}
			st, err := a.api.Status(cmd.Context(), &rationv1.StatusRequest{})
			if err != nil {
				return fmt.Errorf("this build:\n%s\ncluster: %w (--local prints this build's alone)", own, err)
			}
			return a.printVersion(own, st)
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "print this build's version only, without asking a node")
	return cmd
}

// printVersion prints this build's version and, when a node answered, the
// cluster's: as text, or as one JSON object.
func (a *app) printVersion(own version.Info, st *rationv1.StatusResponse) error {
	if a.output == "json" {
		out := map[string]any{"build": own}
		if st != nil {
			b, err := jsonOptions.Marshal(st)
			if err != nil {
				return err
			}
			out["cluster"] = json.RawMessage(b)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	tw := newTable(a.stdout)
	fmt.Fprint(tw, own)
	if st != nil {
		w := tw
		fmt.Fprintf(w, "\ncluster version %d (the log protocol every member applies)\n", max(st.GetClusterVersion(), 1))
		row(w, "MEMBER", "RELEASE", "PROTOCOLS")
		for _, m := range st.GetMembers() {
			protocols := "unknown"
			if m.GetMaxProtocol() > 0 {
				protocols = fmt.Sprintf("%d-%d", m.GetMinProtocol(), m.GetMaxProtocol())
			}
			row(w, m.GetId(), fmtStr(m.GetRelease()), protocols)
		}
	}
	return tw.Flush()
}
