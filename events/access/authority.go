// Package access is who may do what on the bus. NATS runs in operator mode:
// an Authority holds the keys of an operator, its system account and the
// one account Sluice uses, and mints each component a user of that account
// whose credentials allow only the subjects its Permissions list. A worker's
// user is minted for one revision of one function.
package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Authority holds the keys that sign the account and its users.
type Authority struct {
	operator, system, account nkeys.KeyPair
}

// authorityFile is where an Authority's seeds are kept, readable by its owner only.
const authorityFile = "authority.json"

type seeds struct {
	Operator string `json:"operator"`
	System   string `json:"system"`
	Account  string `json:"account"`
}

// NewAuthority makes new keys.
func NewAuthority() (*Authority, error) {
	operator, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	system, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	account, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	return &Authority{operator: operator, system: system, account: account}, nil
}

// LoadOrCreate reads the Authority kept in dir, or makes one and keeps it
// there. JetStream keeps an account's streams under its key, so the same
// keys must be used at every start.
func LoadOrCreate(dir string) (*Authority, error) {
	a, err := Load(dir)
	if !errors.Is(err, os.ErrNotExist) {
		return a, err
	}
	if a, err = NewAuthority(); err != nil {
		return nil, err
	}
	return a, a.Save(dir)
}

// Load reads the Authority kept in dir.
func Load(dir string) (*Authority, error) {
	data, err := os.ReadFile(filepath.Join(dir, authorityFile))
	if err != nil {
		return nil, err
	}
	var s seeds
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, authorityFile), err)
	}
	a := &Authority{}
	for _, key := range []struct {
		seed string
		into *nkeys.KeyPair
	}{{s.Operator, &a.operator}, {s.System, &a.system}, {s.Account, &a.account}} {
		if *key.into, err = nkeys.FromSeed([]byte(key.seed)); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, authorityFile), err)
		}
	}
	return a, nil
}

// Save keeps the Authority's seeds in dir, readable by the owner only.
func (a *Authority) Save(dir string) error {
	s := seeds{}
	for _, key := range []struct {
		pair nkeys.KeyPair
		into *string
	}{{a.operator, &s.Operator}, {a.system, &s.System}, {a.account, &s.Account}} {
		seed, err := key.pair.Seed()
		if err != nil {
			return err
		}
		*key.into = string(seed)
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writePrivate(filepath.Join(dir, authorityFile), data)
}

// writePrivate writes a file only its owner may read.
func writePrivate(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Trust is what a nats-server needs to know to admit the Authority's users:
// the operator and both accounts, signed.
type Trust struct {
	Operator      *jwt.OperatorClaims
	OperatorJWT   string
	SystemAccount string
	// Accounts maps each account's public key to its JWT.
	Accounts map[string]string
}

// Trust signs the operator and the accounts; the Sluice account may store
// up to maxStore bytes on disk (-1: no bound of its own). Components read
// the bound (its account info) to size the streams they make to fit in it.
func (a *Authority) Trust(maxStore int64) (Trust, error) {
	operatorPub, _ := a.operator.PublicKey()
	systemPub, _ := a.system.PublicKey()
	accountPub, _ := a.account.PublicKey()
	operator := jwt.NewOperatorClaims(operatorPub)
	operator.Name = "sluice"
	operator.SystemAccount = systemPub
	operatorJWT, err := operator.Encode(a.operator)
	if err != nil {
		return Trust{}, err
	}
	system := jwt.NewAccountClaims(systemPub)
	system.Name = "SYS"
	systemJWT, err := system.Encode(a.operator)
	if err != nil {
		return Trust{}, err
	}
	account := jwt.NewAccountClaims(accountPub)
	account.Name = "SLUICE"
	account.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: maxStore, Streams: -1, Consumer: -1}
	accountJWT, err := account.Encode(a.operator)
	if err != nil {
		return Trust{}, err
	}
	return Trust{Operator: operator, OperatorJWT: operatorJWT, SystemAccount: systemPub,
		Accounts: map[string]string{systemPub: systemJWT, accountPub: accountJWT}}, nil
}

// MaxControlLine is the longest protocol line the server must take: a
// user's CONNECT carries its JWT with every subject it may use, longer than
// nats-server's default of 4 KiB.
const MaxControlLine = 32 << 10

// ServerConfig is the part of a nats-server configuration file that trusts
// the Authority (operator mode, accounts preloaded in memory).
func (t Trust) ServerConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, "max_control_line: %d\noperator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", MaxControlLine, t.OperatorJWT, t.SystemAccount)
	for pub, token := range t.Accounts {
		fmt.Fprintf(&b, "  %s: %s\n", pub, token)
	}
	b.WriteString("}\n")
	return b.String()
}

// Mint makes the credentials (a NATS .creds file's contents) of a new user
// of the Sluice account named name, allowed what p lists and its own inbox.
func (a *Authority) Mint(name string, p Permissions) ([]byte, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	userPub, _ := user.PublicKey()
	accountPub, _ := a.account.PublicKey()
	claims := jwt.NewUserClaims(userPub)
	claims.Name = name
	claims.IssuerAccount = accountPub
	claims.Pub.Allow.Add(append(p.Publish, api+"INFO")...) // the account's JetStream usage
	claims.Sub.Allow.Add(append(p.Subscribe, Inbox(userPub)+".>")...)
	token, err := claims.Encode(a.account)
	if err != nil {
		return nil, err
	}
	seed, err := user.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// WriteCredentials mints a user and writes its credentials to path,
// readable by the owner only.
func (a *Authority) WriteCredentials(path, name string, p Permissions) error {
	creds, err := a.Mint(name, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writePrivate(path, creds)
}

// Inbox is the inbox prefix of the user whose public key is userPub: its
// replies come there, where no other user may listen.
func Inbox(userPub string) string { return "_INBOX." + userPub }
