package chaos

// The chaos tests run a rationd that TestMain builds with `go build`, which
// go test's result cache cannot see. Importing what rationd is made of
// makes a change to it invalidate a cached chaos result (the flags and
// wiring in cmd/rationd itself are still invisible: CI clears the cache).
import _ "github.com/rationhq/ration/server"
