// Package events owns what travels between the parts of Sluice: the CloudEvent
// types and their NATS binding, the names of subjects, streams, consumers and
// buckets, their provisioning, the Open Inference Protocol v2 tensor codec, and
// Settle, the one place that decides how a JetStream message is acknowledged.
//
// It imports no other package of Sluice; every other package imports it.
package events
