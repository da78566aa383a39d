package access

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// Connect is the client side of credentials: the options that log in as the
// user whose credentials are creds, with its replies on its own inbox.
func Connect(creds []byte) ([]nats.Option, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	user, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	pub, err := user.PublicKey()
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserJWTAndSeed(token, string(seed)), nats.CustomInboxPrefix(Inbox(pub))}, nil
}

// ConnectFile is Connect with the credentials kept in the file at path.
func ConnectFile(path string) ([]nats.Option, error) {
	creds, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("NATS credentials: %w", err)
	}
	options, err := Connect(creds)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return options, nil
}
