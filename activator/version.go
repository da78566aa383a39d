package activator

// Version is reported by GET /v2; the build may set it with -ldflags -X.
var Version = "dev"
