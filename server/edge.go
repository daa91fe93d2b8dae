package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rationhq/ration/api/ration/v1/rationv1connect"
)

// rpcEdge answers, before Connect sees the call, the protocol mistakes a
// hand-written client makes, with an error in Connect's JSON shape that says
// what to send instead (Connect itself answers them with an empty body or a
// plain-text 404): a procedure that does not exist (404, listing the
// services), a method other than POST (405; GET only where Connect serves
// it, on reads), and a body that is neither JSON nor protobuf nor gRPC (415,
// as curl -d and a form post send). Other paths pass untouched.
func rpcEdge(next http.Handler) http.Handler {
	gets := getProcedures()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		service, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if !ok || !strings.HasPrefix(service, "ration.") {
			next.ServeHTTP(w, r)
			return
		}
		if _, known := procedures[r.URL.Path]; !known {
			edgeError(w, http.StatusNotFound, "unimplemented", fmt.Sprintf("no procedure %s: ration serves %s, each method at /SERVICE/METHOD",
				r.URL.Path, strings.Join(publicServices, ", ")))
			return
		}
		switch {
		case r.Method == http.MethodGet && gets[r.URL.Path]:
		case r.Method != http.MethodPost:
			allow := "POST"
			if gets[r.URL.Path] {
				allow = "POST, GET"
			}
			w.Header().Set("Allow", allow)
			edgeError(w, http.StatusMethodNotAllowed, "unimplemented", fmt.Sprintf("%s takes POST, not %s", r.URL.Path, r.Method))
			return
		case !rpcContentType(r.Header.Get("Content-Type")):
			edgeError(w, http.StatusUnsupportedMediaType, "invalid_argument", fmt.Sprintf(
				"Content-Type %q: send a JSON body with Content-Type: application/json (or protobuf as application/proto, or gRPC)", r.Header.Get("Content-Type")))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// publicServices are the services clients call (the peer service is not
// one): health, reflection and the edge's answers name these.
var publicServices = []string{rationv1connect.OwnerServiceName, rationv1connect.WorkerServiceName,
	rationv1connect.InsightServiceName, rationv1connect.ClusterServiceName}

// rpcContentType reports whether a request's Content-Type is one that
// Connect, gRPC or gRPC-Web speaks.
func rpcContentType(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(ct))
	return slices.ContainsFunc([]string{"application/json", "application/proto", "application/connect+", "application/grpc"},
		func(p string) bool { return strings.HasPrefix(ct, p) })
}

// getProcedures are the procedures Connect serves over GET: those whose
// method says it has no side effects.
func getProcedures() map[string]bool {
	out := map[string]bool{}
	for path := range procedures {
		service, method, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		if m := sd.Methods().ByName(protoreflect.Name(method)); m != nil {
			if o, ok := m.Options().(*descriptorpb.MethodOptions); ok && o.GetIdempotencyLevel() == descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
				out[path] = true
			}
		}
	}
	return out
}

// edgeError writes an error in Connect's JSON shape.
func edgeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}
