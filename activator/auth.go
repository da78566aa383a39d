package activator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"
	"sluice.dev/sluice/events"
)

// What an API key may do with a function: a scope is "VERB:FUNCTION", the
// function a name or * for every function.
const (
	ScopePredict  = "predict"  // infer, read results, model metadata and readiness
	ScopeFeedback = "feedback" // send feedback
	ScopeAdmin    = "admin"    // everything
)

// Errors of authentication (401) and authorization (403).
var (
	errUnauthenticated = errors.New("unauthenticated")
	errForbidden       = errors.New("forbidden")
)

// KeyFile is the file of API keys (--api-keys): each key's name, the sha256
// of its secret (never the secret itself), and its scopes.
type KeyFile struct {
	Keys []APIKey `json:"keys"`
}

// APIKey is one key of a KeyFile.
type APIKey struct {
	Name   string   `json:"name"`
	SHA256 string   `json:"sha256"`
	Scopes []string `json:"scopes"`
}

var (
	scopePattern = regexp.MustCompile(`^(predict|feedback|admin):(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`)
	hashPattern  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ParseKeyFile reads and checks a key file, naming the field of any mistake.
func ParseKeyFile(data []byte) (*KeyFile, error) {
	var file KeyFile
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	if file.Keys == nil { // an empty or cut-off file must not revoke every key
		return nil, errors.New("api keys: keys: required (keys: [] revokes every key)")
	}
	var errs []error
	names := map[string]bool{}
	for i, key := range file.Keys {
		field := fmt.Sprintf("keys[%d]", i)
		switch {
		case key.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", field))
		case names[key.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is named twice", field, key.Name))
		}
		names[key.Name] = true
		if !hashPattern.MatchString(key.SHA256) {
			errs = append(errs, fmt.Errorf("%s.sha256: want the 64 lower-case hex digits of the key's sha256 (sluice keys create prints it)", field))
		}
		if len(key.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s.scopes: a key needs at least one scope, such as predict:iris", field))
		}
		for j, scope := range key.Scopes {
			if err := checkScope(scope); err != nil {
				errs = append(errs, fmt.Errorf("%s.scopes[%d]: %w", field, j, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return &file, nil
}

// checkScope says what is wrong with a scope, if anything.
func checkScope(scope string) error {
	if !scopePattern.MatchString(scope) {
		return fmt.Errorf("%q: want predict, feedback or admin, a colon, and a function name or *", scope)
	}
	return nil
}

// allows says whether key may do verb with function.
func (key *APIKey) allows(verb, function string) bool {
	return slices.ContainsFunc(key.Scopes, func(scope string) bool {
		granted, target, _ := strings.Cut(scope, ":")
		return (granted == verb || granted == ScopeAdmin) && (target == "*" || target == function)
	})
}

// NewAPIKey makes a key's secret and its entry for a key file.
func NewAPIKey(name string, scopes []string) (secret string, key APIKey, err error) {
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return "", APIKey{}, err
	}
	if len(scopes) == 0 {
		return "", APIKey{}, errors.New("a key needs at least one scope, such as predict:iris")
	}
	for _, scope := range scopes {
		if err := checkScope(scope); err != nil {
			return "", APIKey{}, fmt.Errorf("scope %w", err)
		}
	}
	secret = "sluice_" + base64.RawURLEncoding.EncodeToString(random)
	return secret, APIKey{Name: name, SHA256: hashSecret(secret), Scopes: scopes}, nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Keys checks callers' API keys against a key file, and follows the file:
// a changed file (a rotated Kubernetes Secret) takes effect within the
// reload interval, without a restart. A file that no longer parses is
// logged and ignored: the keys read last stay in force.
type Keys struct {
	path    string
	current atomic.Pointer[keySet]
	log     *slog.Logger
}

type keySet struct {
	content []byte
	byHash  map[string]*APIKey
}

// LoadKeys reads the key file at path.
func LoadKeys(path string, log *slog.Logger) (*Keys, error) {
	k := &Keys{path: path, log: log}
	if _, err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// reload reads the file again, and reports whether it changed.
func (k *Keys) reload() (bool, error) {
	data, err := os.ReadFile(k.path)
	if err != nil {
		return false, fmt.Errorf("api keys: %w", err)
	}
	if old := k.current.Load(); old != nil && bytes.Equal(old.content, data) {
		return false, nil
	}
	file, err := ParseKeyFile(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", k.path, err)
	}
	set := &keySet{content: data, byHash: make(map[string]*APIKey, len(file.Keys))}
	for i := range file.Keys {
		set.byHash[file.Keys[i].SHA256] = &file.Keys[i]
	}
	k.current.Store(set)
	return true, nil
}

// Follow re-reads the key file every interval until ctx ends.
func (k *Keys) Follow(ctx context.Context, interval time.Duration) {
	events.Every(ctx, interval, func() {
		switch changed, err := k.reload(); {
		case err != nil:
			k.log.Warn("the API keys file cannot be read; the keys read last stay in force", "error", err)
		case changed:
			k.log.Info("API keys reloaded", "file", k.path, "keys", len(k.current.Load().byHash))
		}
	})
}

// Count is how many keys are in force.
func (k *Keys) Count() int { return len(k.current.Load().byHash) }

// authenticate finds the key a caller presents as "Bearer SECRET".
func (k *Keys) authenticate(authorization string) (*APIKey, error) {
	scheme, secret, _ := strings.Cut(authorization, " ")
	if authorization == "" {
		return nil, fmt.Errorf("%w: send an API key: Authorization: Bearer <key>", errUnauthenticated)
	}
	if !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return nil, fmt.Errorf("%w: want Authorization: Bearer <key>", errUnauthenticated)
	}
	key, ok := k.current.Load().byHash[hashSecret(strings.TrimSpace(secret))]
	if !ok {
		return nil, fmt.Errorf("%w: the API key is not known (revoked, or mistyped)", errUnauthenticated)
	}
	return key, nil
}

type callerKey struct{}

// authorize says whether the caller whose key is in ctx may do verb with
// function. A context without a caller is the activator's own work (a
// shadow request): every call from outside has one once keys are on.
func authorize(ctx context.Context, verb, function string) error {
	key, ok := ctx.Value(callerKey{}).(*APIKey)
	if !ok || key.allows(verb, function) {
		return nil
	}
	return fmt.Errorf("%w: API key %q may not %s function %q (its scopes: %s)", errForbidden, key.Name, verb, function, strings.Join(key.Scopes, ", "))
}

// openPaths need no key: probes and the server's own metadata.
var openPaths = []string{"/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/metrics/targets"}

// authenticated admits a request with a known key, and records the key for
// authorize; without keys, everyone is admitted.
func (a *Activator) authenticated(next http.Handler) http.Handler {
	if a.cfg.Keys == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && slices.Contains(openPaths, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		key, err := a.cfg.Keys.authenticate(r.Header.Get("Authorization"))
		if err != nil {
			a.answerError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, key)))
	})
}

// grpcStreamAuthenticated admits a streaming call (server reflection) with
// any known key, once keys are on.
func (a *Activator) grpcStreamAuthenticated(srv any, stream grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if a.cfg.Keys == nil {
		return handler(srv, stream)
	}
	if _, err := a.cfg.Keys.authenticate(firstMetadata(stream.Context(), "authorization")); err != nil {
		return grpcError(err)
	}
	return handler(srv, stream)
}

// grpcAuthenticated is authenticated for gRPC calls: the key comes in the
// metadata "authorization"; liveness, readiness and server metadata are open.
func (a *Activator) grpcAuthenticated(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if a.cfg.Keys == nil || slices.Contains([]string{"ServerLive", "ServerReady", "ServerMetadata"}, info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]) {
		return handler(ctx, req)
	}
	key, err := a.cfg.Keys.authenticate(firstMetadata(ctx, "authorization"))
	if err != nil {
		return nil, grpcError(err)
	}
	return handler(context.WithValue(ctx, callerKey{}, key), req)
}
