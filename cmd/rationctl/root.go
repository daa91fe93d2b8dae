package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// Environment variables read for flags left unset.
const (
	envAddr         = "RATION_ADDR"
	envToken        = "RATION_TOKEN"       // the admin token or an owner token
	envAdminToken   = "RATION_ADMIN_TOKEN" // read when RATION_TOKEN is unset
	envWorkerSecret = "RATION_WORKER_SECRET"

	defaultAddr = "127.0.0.1:7070"
)

// app holds what every command needs: the parsed root flags, the streams and
// the HTTP client. One app serves one invocation; it is not used concurrently.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	// httpClient carries every call. See newHTTPClient for where TLS goes.
	httpClient *http.Client

	// Root flags.
	addrFlag     string
	token        string
	workerSecret string
	output       string
	timeout      time.Duration
	retryFor     time.Duration
	consistFlag  string
	tlsCA        string
	tlsCert      string
	tlsKey       string

	// Resolved in prepare.
	addrs       []string
	consistency rationv1.Consistency
	// api makes the calls, with failover across addrs (newAPIClient).
	api *client.Client
}

// run executes one rationctl invocation and returns the process exit code.
// It is main without the process: tests call it with their own streams and
// environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{
		stdin:      stdin,
		stdout:     stdout,
		stderr:     stderr,
		getenv:     getenv,
		httpClient: newHTTPClient(),
	}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		printError(stderr, err)
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rationctl",
		Short: "Command-line client of a ration cluster",
		Long: `rationctl talks to a ration cluster over the Connect protocol.

Owner, insight and cluster calls carry --token: the admin token, or a
service's owner token (printed once by "service create" and "service
rotate-token"), which reaches that service's calls only. Worker calls carry
--worker-secret.

Addresses, the token and the worker secret can also come from the
environment: RATION_ADDR, RATION_TOKEN (or RATION_ADMIN_TOKEN),
RATION_WORKER_SECRET.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return a.prepare() },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addrFlag, "addr", "", `comma-separated node addresses host:port, tried in order (env RATION_ADDR; default "`+defaultAddr+`")`)
	pf.StringVar(&a.token, "token", "", "admin token, or a service's owner token, for owner, insight and cluster calls (env RATION_TOKEN or RATION_ADMIN_TOKEN)")
	pf.StringVar(&a.workerSecret, "worker-secret", "", "worker secret for worker calls (env RATION_WORKER_SECRET)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "time limit of each call on each node (streams are not limited; 0 disables)")
	pf.DurationVar(&a.retryFor, "retry-for", 5*time.Second, "keep retrying every address this long while no node can serve (e.g. during an election)")
	pf.StringVar(&a.consistFlag, "consistency", "linearizable", "read consistency: linearizable or stale")
	pf.StringVar(&a.tlsCA, "tls-ca", "", "PEM CA certificates that sign the nodes' API certificates (default: the system's); any --tls-* flag makes host:port addresses HTTPS")
	pf.StringVar(&a.tlsCert, "tls-cert", "", "PEM client certificate, for nodes started with --tls-client-ca")
	pf.StringVar(&a.tlsKey, "tls-key", "", "PEM private key of --tls-cert")

	root.AddCommand(
		a.serviceCommand(),
		a.itemsCommand(),
		a.canariesCommand(),
		a.resultsCommand(),
		a.workerCommand(),
		a.statsCommand(),
		a.workersCommand(),
		a.bucketsCommand(),
		a.activityCommand(),
		a.clusterCommand(),
		a.snapshotCommand(),
		a.explainCommand(),
		a.benchCommand(),
		a.versionCommand(),
	)
	return root
}

// prepare validates the root flags and fills what they leave unset from the
// environment. Secrets are not flag defaults so that --help never shows them.
func (a *app) prepare() error {
	if a.addrFlag == "" {
		a.addrFlag = a.getenv(envAddr)
	}
	if a.addrFlag == "" {
		a.addrFlag = defaultAddr
	}
	if a.token == "" {
		a.token = a.getenv(envToken)
	}
	if a.token == "" {
		a.token = a.getenv(envAdminToken)
	}
	if a.workerSecret == "" {
		a.workerSecret = a.getenv(envWorkerSecret)
	}
	a.addrs = a.addrs[:0]
	for _, s := range strings.Split(a.addrFlag, ",") {
		if s = strings.TrimSpace(s); s != "" {
			a.addrs = append(a.addrs, s)
		}
	}
	if len(a.addrs) == 0 {
		return errors.New("--addr: no address given")
	}
	switch a.output {
	case "table", "json":
	default:
		return fmt.Errorf("--output: %q is neither table nor json", a.output)
	}
	switch a.consistFlag {
	case "linearizable":
		// The server's default; leaving the field unspecified keeps requests
		// readable and lets the server own the default.
		a.consistency = rationv1.Consistency_CONSISTENCY_UNSPECIFIED
	case "stale":
		a.consistency = rationv1.Consistency_CONSISTENCY_STALE
	default:
		return fmt.Errorf("--consistency: %q is neither linearizable nor stale", a.consistFlag)
	}
	if a.timeout < 0 {
		return errors.New("--timeout: must not be negative")
	}
	if err := a.setupTLS(); err != nil {
		return err
	}
	var err error
	a.api, err = a.newAPIClient()
	return err
}
