package access_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"sluice.dev/sluice/events"
	"sluice.dev/sluice/events/access"
	"sluice.dev/sluice/events/embedded"
)

// bus is a nats-server in operator mode with the function iris (revision r1,
// one model) and the function other provisioned by the control plane.
type bus struct {
	srv       *server.Server
	authority *access.Authority
	model     access.ModelObject
}

func startBus(t *testing.T) *bus {
	t.Helper()
	authority, err := access.NewAuthority()
	require.NoError(t, err)
	trust, err := authority.Trust(-1)
	require.NoError(t, err)
	cfg := embedded.DefaultConfig()
	cfg.Port, cfg.StoreDir, cfg.Trust = -1, t.TempDir(), &trust
	srv, err := embedded.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	b := &bus{srv: srv.Server, authority: authority}

	_, js := b.connect(t, "control", access.Control())
	ctx := t.Context()
	for _, fn := range []string{"iris", "other"} {
		_, err := events.EnsureStream(ctx, js, fn, events.DefaultQueueConfig())
		require.NoError(t, err)
		_, err = events.EnsureConsumer(ctx, js, fn, "r1", events.DefaultQueueConfig())
		require.NoError(t, err)
	}
	catalog, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.FunctionsBucket})
	require.NoError(t, err)
	_, err = catalog.Put(ctx, "iris", []byte(`{"model":"iris/v1"}`))
	require.NoError(t, err)
	_, err = catalog.Put(ctx, "other", []byte(`{"model":"other/v1"}`))
	require.NoError(t, err)
	models, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.ModelsBucket})
	require.NoError(t, err)
	info, err := models.PutBytes(ctx, "iris/v1", []byte("the iris model"))
	require.NoError(t, err)
	_, err = models.PutBytes(ctx, "other/v1", []byte("the other model"))
	require.NoError(t, err)
	b.model = access.ModelObject{Name: info.Name, NUID: info.NUID}
	return b
}

// conn is a connection that records the permission violations the server reports.
type conn struct {
	nc         *nats.Conn
	violations chan string
}

func (b *bus) connect(t *testing.T, name string, p access.Permissions) (*conn, jetstream.JetStream) {
	t.Helper()
	creds, err := b.authority.Mint(name, p)
	require.NoError(t, err)
	options, err := access.Connect(creds)
	require.NoError(t, err)
	c := &conn{violations: make(chan string, 100)}
	options = append(options, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if strings.Contains(err.Error(), "Permissions Violation") {
			c.violations <- err.Error()
		}
	}))
	c.nc, err = nats.Connect(b.srv.ClientURL(), options...)
	require.NoError(t, err)
	t.Cleanup(c.nc.Close)
	js, err := jetstream.New(c.nc)
	require.NoError(t, err)
	return c, js
}

// refused runs attempt, which must fail, and checks that the server refused
// it as a permission violation naming want.
func (c *conn) refused(t *testing.T, want string, attempt func(ctx context.Context) error) {
	t.Helper()
	for len(c.violations) > 0 {
		<-c.violations // an earlier attempt's
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := attempt(ctx)
	_ = c.nc.Flush()
	var seen []string
	deadline := time.After(2 * time.Second)
	for {
		select {
		case violation := <-c.violations:
			if strings.Contains(violation, want) {
				require.Error(t, err, "the server refused %s but the attempt succeeded", want)
				return
			}
			seen = append(seen, violation)
		case <-deadline:
			t.Fatalf("no permission violation naming %s (attempt returned %v; violations: %q)", want, err, seen)
		}
	}
}

// subscribeRefused checks that subscribing to subject is refused.
func (c *conn) subscribeRefused(t *testing.T, subject string) {
	t.Helper()
	c.refused(t, subject, func(ctx context.Context) error {
		sub, err := c.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		_, err = sub.NextMsgWithContext(ctx)
		return err
	})
}

// publishRefused checks that a core NATS publish on subject is refused.
func (c *conn) publishRefused(t *testing.T, subject string) {
	t.Helper()
	c.refused(t, subject, func(ctx context.Context) error {
		_, err := c.nc.RequestWithContext(ctx, subject, []byte("forged"))
		return err
	})
}

// purgeCatalogRefused checks that purging the catalog's stream is refused.
func (c *conn) purgeCatalogRefused(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	c.refused(t, "STREAM.PURGE.KV_"+events.FunctionsBucket, func(ctx context.Context) error {
		stream, err := js.Stream(ctx, "KV_"+events.FunctionsBucket)
		if err != nil {
			return err
		}
		return stream.Purge(ctx)
	})
}

// The four attacks of a hostile client on the bus, each tried by the
// activator's identity (the one exposed to the network) and a worker's, and
// what each identity may do.
func TestEachIdentityIsRefusedWhatItIsNotFor(t *testing.T) {
	b := startBus(t)
	activator, activatorJS := b.connect(t, "activator", access.Activator())
	worker, workerJS := b.connect(t, "worker iris r1", access.Worker("iris", "r1", b.model))
	autoscaler, autoscalerJS := b.connect(t, "autoscaler", access.Autoscaler())
	trainer, trainerJS := b.connect(t, "trainer iris", access.Trainer("iris"))
	ctx := t.Context()

	t.Run("activator does its work", func(t *testing.T) {
		_, err := activatorJS.Publish(ctx, events.RequestSubject("iris", "r1"), []byte("request"))
		require.NoError(t, err)
		catalog, err := activatorJS.KeyValue(ctx, events.FunctionsBucket)
		require.NoError(t, err)
		_, err = catalog.Get(ctx, "iris")
		require.NoError(t, err)
		watcher, err := catalog.WatchAll(ctx)
		require.NoError(t, err)
		require.NoError(t, watcher.Stop())
		_, err = events.EnsureResultsBucket(ctx, activatorJS, time.Hour)
		require.NoError(t, err)
		replies, err := activator.nc.SubscribeSync(events.InstanceReplies("a1"))
		require.NoError(t, err)
		require.NoError(t, replies.Unsubscribe())
	})
	t.Run("activator cannot read every message", func(t *testing.T) {
		activator.subscribeRefused(t, ">")
		activator.subscribeRefused(t, events.RequestSubjects("iris"))
	})
	t.Run("activator cannot purge the catalog", func(t *testing.T) {
		activator.purgeCatalogRefused(t, activatorJS)
	})
	t.Run("activator cannot delete a function's stream", func(t *testing.T) {
		activator.refused(t, "STREAM.DELETE."+events.StreamName("iris"), func(ctx context.Context) error {
			return activatorJS.DeleteStream(ctx, events.StreamName("iris"))
		})
	})
	t.Run("activator cannot replace a model", func(t *testing.T) {
		catalog, err := activatorJS.KeyValue(ctx, events.FunctionsBucket)
		require.NoError(t, err)
		activator.refused(t, "$KV."+events.FunctionsBucket+".iris", func(ctx context.Context) error {
			_, err := catalog.Put(ctx, "iris", []byte(`{"model":"evil"}`))
			return err
		})
		activator.refused(t, events.ModelsBucket, func(ctx context.Context) error {
			models, err := activatorJS.ObjectStore(ctx, events.ModelsBucket)
			if err != nil {
				return err
			}
			_, err = models.PutBytes(ctx, "iris/v1", []byte("evil"))
			return err
		})
	})
	t.Run("activator cannot take a function's requests", func(t *testing.T) {
		activator.refused(t, "CONSUMER.MSG.NEXT."+events.StreamName("iris"), func(ctx context.Context) error {
			consumer, err := activatorJS.Consumer(ctx, events.StreamName("iris"), events.ConsumerName("r1"))
			if err != nil {
				return err
			}
			_, err = consumer.Next(jetstream.FetchContext(ctx))
			return err
		})
	})

	t.Run("worker does its work", func(t *testing.T) {
		consumer, err := workerJS.Consumer(ctx, events.StreamName("iris"), events.ConsumerName("r1"))
		require.NoError(t, err)
		msg, err := consumer.Next(jetstream.FetchMaxWait(2 * time.Second))
		require.NoError(t, err)
		require.Equal(t, "request", string(msg.Data()))
		require.NoError(t, msg.DoubleAck(ctx))
		catalog, err := workerJS.KeyValue(ctx, events.FunctionsBucket)
		require.NoError(t, err)
		_, err = catalog.Get(ctx, "iris")
		require.NoError(t, err)
		models, err := workerJS.ObjectStore(ctx, events.ModelsBucket)
		require.NoError(t, err)
		model, err := models.GetBytes(ctx, "iris/v1")
		require.NoError(t, err)
		require.Equal(t, "the iris model", string(model))
		require.NoError(t, worker.nc.Publish(events.ReplySubject("iris", "a1", "1"), []byte("answer")))
	})
	t.Run("worker cannot touch another function", func(t *testing.T) {
		worker.refused(t, events.StreamName("other"), func(ctx context.Context) error {
			consumer, err := workerJS.Consumer(ctx, events.StreamName("other"), events.ConsumerName("r1"))
			if err != nil {
				return err
			}
			_, err = consumer.Next(jetstream.FetchContext(ctx))
			return err
		})
		worker.publishRefused(t, events.RequestSubject("other", "r1"))
		worker.publishRefused(t, events.ReplySubject("other", "a1", "1"))
		worker.refused(t, "$KV."+events.FunctionsBucket+".other", func(ctx context.Context) error {
			catalog, err := workerJS.KeyValue(ctx, events.FunctionsBucket)
			if err != nil {
				return err
			}
			_, err = catalog.Get(ctx, "other")
			return err
		})
		worker.refused(t, ".M.", func(ctx context.Context) error {
			models, err := workerJS.ObjectStore(ctx, events.ModelsBucket)
			if err != nil {
				return err
			}
			_, err = models.GetBytes(ctx, "other/v1")
			return err
		})
	})
	t.Run("worker cannot listen or rewrite", func(t *testing.T) {
		worker.subscribeRefused(t, ">")
		worker.subscribeRefused(t, events.ReplySubjects("iris"))
		catalog, err := workerJS.KeyValue(ctx, events.FunctionsBucket)
		require.NoError(t, err)
		worker.refused(t, "$KV."+events.FunctionsBucket+".iris", func(ctx context.Context) error {
			_, err := catalog.Put(ctx, "iris", []byte(`{"model":"evil"}`))
			return err
		})
		worker.refused(t, "STREAM.DELETE."+events.StreamName("iris"), func(ctx context.Context) error {
			return workerJS.DeleteStream(ctx, events.StreamName("iris"))
		})
	})

	t.Run("autoscaler reads depth and nothing it may not", func(t *testing.T) {
		consumer, err := autoscalerJS.Consumer(ctx, events.StreamName("iris"), events.ConsumerName("r1"))
		require.NoError(t, err)
		_, err = consumer.Info(ctx)
		require.NoError(t, err)
		states, err := events.QueueStates(ctx, autoscalerJS)
		require.NoError(t, err)
		require.Contains(t, states, "iris")
		_, err = events.EnsureScaleBucket(ctx, autoscalerJS)
		require.NoError(t, err)
		autoscaler.publishRefused(t, events.RequestSubject("iris", "r1"))
		autoscaler.subscribeRefused(t, ">")
		autoscaler.purgeCatalogRefused(t, autoscalerJS)
	})

	t.Run("trainer publishes its own function only", func(t *testing.T) {
		models, err := trainerJS.ObjectStore(ctx, events.ModelsBucket)
		require.NoError(t, err)
		_, err = models.PutBytes(ctx, "iris/v2", []byte("a new iris model"))
		require.NoError(t, err)
		trainer.publishRefused(t, events.ModelSubject("other"))
		catalog, err := trainerJS.KeyValue(ctx, events.FunctionsBucket)
		require.NoError(t, err)
		trainer.refused(t, "$KV."+events.FunctionsBucket+".iris", func(ctx context.Context) error {
			_, err := catalog.Put(ctx, "iris", []byte(`{"model":"iris/v2"}`))
			return err
		})
	})
}

// A client without credentials minted by the authority is not admitted.
func TestStrangersAreNotAdmitted(t *testing.T) {
	b := startBus(t)
	_, err := nats.Connect(b.srv.ClientURL())
	require.ErrorContains(t, err, "Authorization Violation")
	other, err := access.NewAuthority()
	require.NoError(t, err)
	creds, err := other.Mint("stranger", access.Control())
	require.NoError(t, err)
	options, err := access.Connect(creds)
	require.NoError(t, err)
	_, err = nats.Connect(b.srv.ClientURL(), options...)
	require.ErrorContains(t, err, "Authorization Violation")
}
