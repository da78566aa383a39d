// Package retrain decides when a function is trained again and starts the
// training runs: Trigger is the pure decision (observations, policy and the
// time in; whether to train, and why, out), the loop around it does the I/O,
// and a Launcher runs the trainer — a child process on one machine, a Job on
// Kubernetes.
package retrain
