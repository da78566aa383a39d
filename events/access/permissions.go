package access

import (
	"encoding/base64"

	"sluice.dev/sluice/events"
)

// Permissions are the subjects one identity may publish to and subscribe
// to; everything else is refused by the server. Every identity may also
// subscribe to its own inbox (Inbox), which Mint adds.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

func (p Permissions) with(more ...Permissions) Permissions {
	for _, m := range more {
		p.Publish = append(p.Publish, m.Publish...)
		p.Subscribe = append(p.Subscribe, m.Subscribe...)
	}
	return p
}

const api = "$JS.API."

// publish allows publishing on subjects: core NATS, and JetStream's
// publish, whose acknowledgement comes back on the inbox.
func publish(subjects ...string) Permissions { return Permissions{Publish: subjects} }

// subscribe allows subscribing to subjects on core NATS.
func subscribe(subjects ...string) Permissions { return Permissions{Subscribe: subjects} }

// lookupStream allows looking a stream up: its configuration and state.
func lookupStream(stream string) Permissions { return publish(api + "STREAM.INFO." + stream) }

// openStream allows looking a stream up and creating it when it does not
// exist yet, with the configuration the code gives it: what a component
// that writes to it needs; and reading the account's limits, to size it.
// Changing, purging or deleting it is not allowed.
func openStream(stream string) Permissions {
	return lookupStream(stream).with(publish(api+"STREAM.CREATE."+stream, api+"INFO"))
}

// readKeys allows reading and watching the keys of a KV bucket that match keys.
func readKeys(bucket, keys string) Permissions {
	stream, subjects := "KV_"+bucket, "$KV."+bucket+"."+keys
	return lookupStream(stream).with(
		publish(api+"DIRECT.GET."+stream+"."+subjects, api+"CONSUMER.CREATE."+stream+".*."+subjects),
		consumerHousekeeping(stream))
}

// writeKeys allows reading and writing the keys of a KV bucket that match keys.
func writeKeys(bucket, keys string) Permissions {
	return readKeys(bucket, keys).with(openStream("KV_"+bucket), publish("$KV."+bucket+"."+keys))
}

// consumerHousekeeping is what an ephemeral or ordered consumer of stream
// needs besides its creation: its flow control, its info and its deletion.
func consumerHousekeeping(stream string) Permissions {
	return publish("$JS.FC."+stream+".>", api+"CONSUMER.INFO."+stream+".*", api+"CONSUMER.DELETE."+stream+".*")
}

// readObjects allows reading every object of an object store.
func readObjects(bucket string) Permissions {
	stream := "OBJ_" + bucket
	return lookupStream(stream).with(
		publish(api+"DIRECT.GET."+stream+".$O."+bucket+".M.*", api+"CONSUMER.CREATE."+stream+".*.$O."+bucket+".C.*"),
		consumerHousekeeping(stream))
}

// readObject allows reading one object, whose chunks carry the id nuid.
func readObject(bucket, name, nuid string) Permissions {
	stream := "OBJ_" + bucket
	return lookupStream(stream).with(
		publish(api+"DIRECT.GET."+stream+"."+objectMeta(bucket, name), api+"CONSUMER.CREATE."+stream+".*.$O."+bucket+".C."+nuid),
		consumerHousekeeping(stream))
}

// objectMeta is the subject of an object's description, as nats.go names it.
func objectMeta(bucket, name string) string {
	return "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

// writeObjects allows reading, writing and deleting every object of an object store.
func writeObjects(bucket string) Permissions {
	stream := "OBJ_" + bucket
	return readObjects(bucket).with(openStream(stream), publish("$O."+bucket+".>", api+"STREAM.PURGE."+stream, api+"STREAM.MSG.GET."+stream))
}

// consume allows taking, and settling, the messages of one durable consumer.
func consume(stream, consumer string) Permissions {
	return lookupStream(stream).with(publish(api+"CONSUMER.INFO."+stream+"."+consumer,
		api+"CONSUMER.MSG.NEXT."+stream+"."+consumer, "$JS.ACK."+stream+"."+consumer+".>"))
}

// consumeDurable allows creating a durable consumer and consuming it.
func consumeDurable(stream, consumer, filter string) Permissions {
	return openStream(stream).with(consume(stream, consumer),
		publish(api+"CONSUMER.CREATE."+stream+"."+consumer+"."+filter, api+"CONSUMER.CREATE."+stream+"."+consumer))
}

// readMessages allows reading the messages of stream on subjects, one by
// one or through consumers of its own (which take no message away: the
// streams read so are not work queues).
func readMessages(stream, subjects string) Permissions {
	return lookupStream(stream).with(publish(api+"DIRECT.GET."+stream+"."+subjects,
		api+"CONSUMER.CREATE."+stream+".*."+subjects, api+"CONSUMER.MSG.NEXT."+stream+".*", "$JS.ACK."+stream+".>"),
		consumerHousekeeping(stream))
}

// depth is reading the state of any stream or consumer, one by one or the
// list of streams (events.QueueStates): how many requests wait, nothing of
// what they hold. Stream names are not subjects, so the function streams
// cannot be told from the others here.
var depth = publish(api+"STREAM.INFO.*", api+"STREAM.LIST", api+"CONSUMER.INFO.*.*")

// Control is the control plane (the controller, `sluice up`'s lifecycle,
// the operator's CLI): it writes the catalog and the model store, makes and
// removes streams and consumers, and so may do anything in the account.
func Control() Permissions { return Permissions{Publish: []string{">"}, Subscribe: []string{">"}} }

// Activator may publish requests to every function, read the catalog and
// the scale status, keep results, answers, counts and feedback, deliver
// sinks and dead-letter them; it may not write the catalog or the model
// store, consume a function's queue or change any stream.
func Activator() Permissions {
	return publish(events.RequestSubjects("*"), events.PokeSubject, events.FeedbackSubject("*"), events.DeadLetterSubject("*")).with(
		readKeys(events.FunctionsBucket, ">"), readKeys(events.ScaleBucket, ">"),
		writeKeys(events.ResultsBucket, ">"), writeKeys(events.CountsBucket, ">"),
		writeObjects(events.AnswersStore),
		openStream(events.FeedbackStream), openStream(events.DeadLetterStream),
		publish(api+"DIRECT.GET.*."+events.PredictionSubjects("*")),
		consumeDurable(events.SinkStream, "*", ">"),
		depth,
		subscribe(events.ReplySubjects("*"), events.ResultSubject("*")),
	)
}

// Autoscaler may read the catalog and the depth of every revision's queue,
// write the scale status and announce scale events.
func Autoscaler() Permissions {
	return publish(events.ScaleEventSubject("*")).with(
		readKeys(events.FunctionsBucket, ">"), writeKeys(events.ScaleBucket, ">"), readKeys(events.CountsBucket, ">"),
		depth,
		subscribe(events.PokeSubject),
	)
}

// ModelObject names the object of the model store a worker serves: its
// name and the id its chunks carry.
type ModelObject struct {
	Name, NUID string
}

// Worker may consume one revision's queue, read its function's catalog
// entry and its model, answer its callers, record its results and count
// what it did; nothing of another function.
func Worker(function, revision string, model ModelObject) Permissions {
	stream := events.StreamName(function)
	return publish(events.ReplySubjects(function), events.ResultSubject(function), events.SinkSubject(function),
		events.DeadLetterSubject(function), events.PredictionSubjects(function), events.RevisionReportSubject(function)).with(
		consume(stream, events.ConsumerName(revision)),
		readKeys(events.FunctionsBucket, function),
		readObject(functionsModels, model.Name, model.NUID),
		writeKeys(events.ResultsBucket, ">"), writeKeys(events.CountsBucket, events.CountsKeys(function, revision)),
		writeObjects(events.AnswersStore),
		openStream(events.PredictionsStream(function)), openStream(events.SinkStream), openStream(events.DeadLetterStream),
	)
}

// Trainer may read its function's catalog entry, the model store, its
// feedback and prediction log, write new model versions and announce them.
// A version it writes serves only once the control plane has deployed it,
// checked against its sha256.
func Trainer(function string) Permissions {
	return publish(events.ModelSubject(function)).with(
		readKeys(events.FunctionsBucket, function),
		writeObjects(functionsModels),
		readMessages(events.FeedbackStream, events.FeedbackSubject(function)),
		readMessages(events.PredictionsStream(function), events.PredictionSubjects(function)),
		openStream(events.LifecycleStream),
	)
}

// functionsModels is the model store's bucket.
const functionsModels = events.ModelsBucket
