package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ordermesh/ordermesh/internal/apperr"
	"github.com/ordermesh/ordermesh/internal/platform/identity"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations are the gateway's tables (API keys).
func Migrations() sqldb.Migrations { return sqldb.Embedded("gateway", migrations) }

// APIKeyPrefix starts every ordermesh API key.
const APIKeyPrefix = "om_"

// APIKey describes a key; the key itself is never stored.
type APIKey struct {
	ID        string     `json:"id"`
	Subject   string     `json:"subject"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// CreateAPIKey stores a new key for subject with scopes and returns it:
// the only time the key is seen.
func CreateAPIKey(ctx context.Context, db *sqldb.DB, subject string, scopes []string) (key string, info APIKey, err error) {
	if subject == "" || len(subject) > 100 {
		return "", APIKey{}, errors.New("--sub: give the subject the key acts as (1-100 characters)")
	}
	if err := CheckScopes(scopes); err != nil {
		return "", APIKey{}, fmt.Errorf("--scopes: %w", err)
	}
	secret := make([]byte, 24)
	rand.Read(secret)
	idb := make([]byte, 6)
	rand.Read(idb)
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(secret)
	info = APIKey{ID: "ak_" + hex.EncodeToString(idb), Subject: subject, Scopes: scopes, CreatedAt: time.Now().UTC()}
	if err := insertAPIKey(ctx, db, info, hashKey(key)); err != nil {
		return "", APIKey{}, fmt.Errorf("store API key: %w", err)
	}
	return key, info, nil
}

// RevokeAPIKey revokes key id; gateways stop accepting it within
// apiKeyCacheTTL.
func RevokeAPIKey(ctx context.Context, db *sqldb.DB, id string) error {
	n, err := revokeAPIKey(ctx, db, id, time.Now().UTC())
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no active API key %q (see `ordermesh apikey list`)", id)
	}
	return nil
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// apiKeyCacheTTL is how long a looked-up key (valid or not) is remembered.
const apiKeyCacheTTL = 10 * time.Second

// maxCachedKeys bounds the cache; it is emptied when full.
const maxCachedKeys = 10000

// APIKeys resolves keys to identities against the gateway's database, with
// a short cache so a busy key costs one query per TTL.
type APIKeys struct {
	db    *sqldb.DB
	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	id      identity.Identity
	ok      bool
	expires time.Time
}

// NewAPIKeys returns a resolver over db (migrated with Migrations).
func NewAPIKeys(db *sqldb.DB) *APIKeys {
	return &APIKeys{db: db, cache: map[string]cachedKey{}}
}

// Lookup returns the identity of an active key, or an Unauthorized error.
func (k *APIKeys) Lookup(ctx context.Context, key string) (identity.Identity, error) {
	h := hashKey(key)
	k.mu.Lock()
	c, hit := k.cache[h]
	k.mu.Unlock()
	if !hit || time.Now().After(c.expires) {
		id, sub, scopes, err := activeAPIKey(ctx, k.db, h)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			c = cachedKey{}
		case err != nil:
			return identity.Identity{}, apperr.New(apperr.Unavailable, "", "API key store: %v", err)
		default:
			c = cachedKey{ok: true, id: identity.Identity{Subject: sub, Scopes: strings.Fields(scopes), Via: "apikey", KeyID: id}}
		}
		c.expires = time.Now().Add(apiKeyCacheTTL)
		k.mu.Lock()
		if len(k.cache) >= maxCachedKeys {
			clear(k.cache)
		}
		k.cache[h] = c
		k.mu.Unlock()
	}
	if !c.ok {
		return identity.Identity{}, apperr.New(apperr.Unauthorized, "Authorization", "unknown or revoked API key")
	}
	return c.id, nil
}
