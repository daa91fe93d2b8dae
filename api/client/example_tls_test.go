package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/rationhq/ration/api/client"
	rationv1 "github.com/rationhq/ration/api/ration/v1"
)

// A client of nodes that serve TLS (rationd --tls-cert) and ask for a
// client certificate (--tls-client-ca): the addresses say https, and
// HTTPClient carries the CA that signed the nodes' certificates and the
// client's own certificate. ForceAttemptHTTP2 keeps HTTP/2, which a custom
// TLS config otherwise turns off; it is needed for connect.WithGRPC().
func ExampleNew_tls() {
	pem, err := os.ReadFile("ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair("client.pem", "client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{
		Addrs:      []string{"https://node1.example:7070", "https://node2.example:7070", "https://node3.example:7070"},
		AdminToken: os.Getenv("RATION_ADMIN_TOKEN"),
		HTTPClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}},
			ForceAttemptHTTP2: true,
			IdleConnTimeout:   time.Minute,
		}},
		Options: []connect.ClientOption{connect.WithGRPC()},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.ListServices(context.Background(), &rationv1.ListServicesRequest{}); err != nil {
		log.Fatal(err)
	}
}
